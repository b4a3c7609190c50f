"""`python -m marginscope ...` is the `marginscope` command (what torchrun runs: `-m marginscope train`)."""

from marginscope.backend.cli import main

if __name__ == "__main__":
    main()

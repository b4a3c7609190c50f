"""Fetch the dashboard's optional browser bundles at set-up time (`make setup` runs this).

The pages work without them (the server falls back to the full plotly.min.js of the plotly
Python package, and /redoc points to /docs), but with them a page parses a fifth of the
JavaScript (plotly.js's cartesian bundle has every trace type the pages draw: scatter, heatmap,
histogram, bar) and ReDoc works offline. Each bundle is one pinned npm tarball fetched over plain
HTTPS (no node or npm needed) and checked against its sha256 before anything is written; the
files land in frontend/vendor/ (not tracked), where the server looks for them. At run time
nothing is fetched.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[1] / "frontend" / "vendor"

# (tarball URL, its sha256, {file written under frontend/vendor/: member inside the tarball})
BUNDLES = [
    ("https://registry.npmjs.org/plotly.js-cartesian-dist-min/-/plotly.js-cartesian-dist-min-4.1.1.tgz",
     "c5f9a84666b97e571a04de689e09319869e60900e265c89eac2f71d0b5a0de88",
     {"plotly-cartesian.min.js": "package/plotly-cartesian.min.js"}),
    ("https://registry.npmjs.org/redoc/-/redoc-2.5.1.tgz",
     "01ba9840ed89ca7862268d8d21892bcaa54e0fce6a62941faf12021834cd2032",
     {"redoc.standalone.js": "package/bundles/redoc.standalone.js"}),
    # Swagger UI 5 reads OpenAPI 3.1 (FastAPI's); the swagger-ui-bundle package's 4.x is the fallback
    ("https://registry.npmjs.org/swagger-ui-dist/-/swagger-ui-dist-5.35.0.tgz",
     "1b8e891893404ea4c3558b6a87e2a3e494e7eedba41168c2ece5800a391a6ea6",
     {"swagger-ui/swagger-ui-bundle.js": "package/swagger-ui-bundle.js",
      "swagger-ui/swagger-ui.css": "package/swagger-ui.css",
      "swagger-ui/favicon-32x32.png": "package/favicon-32x32.png"}),
]


# Links a bundle would follow at run time, replaced once its checksum is verified: ReDoc's
# "API docs by Redocly" badge loads its logo from a CDN.
OFFLINE = {"redoc.standalone.js": [(b"https://cdn.redoc.ly/redoc/logo-mini.svg", b"data:,")]}


def fetch(url: str, sha256: str, members: dict[str, str]) -> None:
    if all((VENDOR / name).is_file() for name in members):
        return
    with urllib.request.urlopen(url, timeout=120) as answer:  # noqa: S310 (a pinned https URL)
        data = answer.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{url}: sha256 {digest} is not the pinned {sha256}; nothing written")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for name, member in members.items():
            extracted = tar.extractfile(member)
            if extracted is None:
                raise SystemExit(f"{url} has no {member}")
            target = VENDOR / name
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            content = extracted.read()
            for online, offline in OFFLINE.get(name, []):
                content = content.replace(online, offline)
            partial.write_bytes(content)
            partial.replace(target)
            print(f"fetched {name} ({target.stat().st_size // 1024} KiB)")


def main() -> int:

    for bundle in BUNDLES:
        try:
            fetch(*bundle)
        except (OSError, SystemExit) as exc:  # offline set-up: the server falls back
            print(f"could not fetch {bundle[0]}: {exc} (the server falls back without it)",
                  file=sys.stderr)

    return 0  # an optional bundle never fails the set-up


if __name__ == "__main__":
    raise SystemExit(main())

"""The usage dashboard: static files served from `gateway/dashboard/` under `/dashboard/`.

The page is plain HTML, one JavaScript module and one stylesheet, with Chart.js vendored in
`vendor/`: nothing is built at install time and nothing is loaded from another origin. The page
asks for a key, keeps it in sessionStorage and calls the reports and insights APIs with it.
The files themselves are public; every number comes from an authenticated API call.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, RedirectResponse

from gateway.errors import NotFound

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
# The page holds a key: allow scripts, styles and API calls from this origin only, and no
# framing (clickjacking). Chart.js sets styles through the DOM, which CSP does not restrict.
HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/dashboard")
async def dashboard_root() -> RedirectResponse:
    # Relative: the page's own relative links then work behind a path prefix too.
    return RedirectResponse("dashboard/", status_code=308)


@router.get("/dashboard/")
async def dashboard_index() -> FileResponse:
    return static_file("index.html")


@router.get("/dashboard/{path:path}")
async def dashboard_file(path: str) -> FileResponse:
    return static_file(path)


def static_file(path: str) -> FileResponse:
    """A file of the dashboard directory; anything outside it or of another type is a 404."""
    target = (DASHBOARD_DIR / path).resolve()
    media_type = MEDIA_TYPES.get(target.suffix)
    if media_type is None or not target.is_relative_to(DASHBOARD_DIR) or not target.is_file():
        raise NotFound(f"Unknown path: /dashboard/{path}", code="unknown_url")
    return FileResponse(target, media_type=media_type, headers=HEADERS)

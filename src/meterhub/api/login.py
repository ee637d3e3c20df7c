"""The dashboard's login and logout: ``GET /login`` is a form with one password field for an
API key, ``POST /login`` checks the key and sets the session cookie (`meterhub.api.session`)
before sending the browser on, ``POST /logout`` clears it. The key travels only in the
form's body: never in a URL, a page or a log line."""

from __future__ import annotations

import html
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from meterhub.api.bodies import bounded_body
from meterhub.api.security import KeyRing
from meterhub.api.session import COOKIE, Sessions, session_key

LOGIN_HEADERS = {"Cache-Control": "no-store",
                 "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
                                            "frame-ancestors 'none'; base-uri 'none'; "
                                            "form-action 'self'",
                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
MAX_FORM = 4096  #: bytes: a key is under 100 characters, the form's other field a path


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this site only (never another host)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def cross_site(request: Request) -> bool:
    """Whether a form post comes from another site's page (the browser says so in
    Sec-Fetch-Site, or its Origin names another host): such a post may neither log this
    browser in under someone else's key nor log it out."""
    if request.headers.get("sec-fetch-site", "") == "cross-site":
        return True
    origin = request.headers.get("origin")
    # hosts only: behind a proxy that ends TLS the page is https, the request here http
    return origin is not None and urlsplit(origin).netloc != request.headers.get("host", "")


async def small_form(request: Request) -> dict[str, str] | None:
    """The URL-encoded form of at most `MAX_FORM` bytes (reading stops there), or None: a
    login form is two short fields, and no one without a key may make the server read
    more."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        return None
    body = await bounded_body(request, MAX_FORM)
    if body is None:
        return None
    try:
        pairs = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return None
    return {name: values[0] for name, values in pairs.items()}


def login_page(message: str | None = None, target: str = "/", status: int = 200,
               icon: str | None = None) -> HTMLResponse:
    notice = (f'<p class="error" role="alert">{html.escape(message)}</p>' if message
              else "")
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>meterhub: log in</title>
{f'<link rel="icon" href="{html.escape(icon)}" type="image/svg+xml">' if icon else ""}
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; margin: 0; display: grid;
       min-height: 100vh; place-items: center; background: #f4f5f7; color: #1d2330; }}
form {{ background: #fff; padding: 1.5rem; border-radius: 8px; width: min(22rem, 90vw);
        box-shadow: 0 1px 4px #0002; }}
label {{ display: block; font-weight: 600; margin-bottom: .25rem; }}
input[type=password] {{ width: 100%; box-sizing: border-box; padding: .5rem;
                        font: inherit; border: 1px solid #8a93a6; border-radius: 4px; }}
button {{ margin-top: 1rem; width: 100%; padding: .6rem; font: inherit; border: 0;
          border-radius: 4px; background: #2857c5; color: #fff; cursor: pointer; }}
button:focus-visible, input:focus-visible {{ outline: 3px solid #f2b01e; }}
.error {{ color: #a4161a; }}
</style></head>
<body><main>
<form method="post" action="/login">
<h1>meterhub</h1>
{notice}
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required
       autofocus>
<input type="hidden" name="next" value="{html.escape(target)}">
<button type="submit">Log in</button>
<p><small>A key with read scope: <code>meterhub keys create --name me</code></small></p>
</form></main></body></html>"""
    return HTMLResponse(body, status_code=status, headers=LOGIN_HEADERS)


def install(app: FastAPI, sessions: Sessions, icon: str | None = None) -> None:
    """The login and logout paths; ``icon``: the URL of the pages' icon."""
    app.state.sessions = sessions

    @app.api_route("/login", methods=["GET", "HEAD"], include_in_schema=False)
    async def login_form(request: Request) -> Response:
        return login_page(target=safe_next(request.query_params.get("next")), icon=icon)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if cross_site(request):
            return login_page("Log in from this site's own login page.", status=403,
                              icon=icon)
        form = await small_form(request)
        if form is None:
            return login_page("That is not this page's form.", status=400, icon=icon)
        text, target = form.get("key"), safe_next(form.get("next"))
        ring: KeyRing = request.app.state.keys
        key = ring.find(text.strip()) if text and text.strip() else None
        if key is None:
            return login_page("That key is unknown or revoked.", target, status=401,
                              icon=icon)
        response = RedirectResponse(target, status_code=303)
        sessions.set(response, key, secure=request.url.scheme == "https")
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        if cross_site(request):  # another site may not log this browser out
            return Response("Log out from this site's own pages.", status_code=403)
        response = RedirectResponse("/login", status_code=303)
        Sessions.clear(response)
        return response


def login_redirect(request: Request) -> RedirectResponse | None:
    """The way to the login page for a page request without a live session (else None)."""
    if session_key(request) is not None:
        return None
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    if request.cookies.get(COOKIE):
        Sessions.clear(response)  # expired or its key revoked
    return response

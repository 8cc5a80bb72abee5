"""The user's browser, scripted: follows redirects, keeps cookies, fills and submits the provider's forms.

It drives the sign-in pages of `tools/oidc/provider.mjs` the way a person would: open the URL the
login command printed, type the username and password into the login form, press Allow (or Deny)
on the consent form, and follow the final redirect back to the command's loopback listener.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser

import httpx2

MAX_PAGES = 12


@dataclass
class Form:
    action: str
    fields: dict[str, str] = field(default_factory=dict)
    button: str = ""


class _Forms(HTMLParser):
    """Every form of a page: its action, its named inputs and its submit button's label."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._in_button = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Form(attributes.get("action", "")))
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1].fields[attributes["name"]] = attributes.get("value", "")
        elif tag == "button":
            self._in_button = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self._in_button = False

    def handle_data(self, data: str) -> None:
        if self._in_button and self.forms:
            self.forms[-1].button += data.strip()


def forms_of(html: str) -> list[Form]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


@dataclass
class Visit:
    """What the browser went through: every URL it opened, and the last page it showed."""

    urls: list[str] = field(default_factory=list)
    last: httpx2.Response | None = None


async def sign_in(
    url: str,
    *,
    username: str,
    password: str,
    consent: str = "Allow",
    redirect: Callable[[str], str] = lambda location: location,
) -> Visit:
    """Open `url`, sign in as `username`, answer the consent form with `consent`, come back.

    `redirect` may rewrite the final redirect to the loopback listener (to forge its state, say).
    """
    visit = Visit()
    async with httpx2.AsyncClient(trust_env=False, timeout=10.0) as browser:
        response = await browser.get(url)
        for _ in range(MAX_PAGES):
            visit.urls.append(str(response.request.url))
            visit.last = response
            if response.is_redirect:
                location = str(response.url.join(response.headers["location"]))
                if location.startswith("http://127.0.0.1") and "/callback?" in location:
                    location = redirect(location)
                response = await browser.get(location)
                continue
            forms = forms_of(response.text) if "html" in response.headers.get("content-type", "") else []
            login = next((form for form in forms if {"username", "password"} <= form.fields.keys()), None)
            if login is not None and response.status_code == 200:
                data = {**login.fields, "username": username, "password": password}
                response = await browser.post(response.url.join(login.action), data=data)
                continue
            chosen = next((form for form in forms if form.button == consent), None)
            if chosen is None:
                return visit  # a page without the forms we fill: the loopback's answer, or an error
            response = await browser.post(response.url.join(chosen.action), data=chosen.fields)
    raise AssertionError(f"the sign-in did not end within {MAX_PAGES} pages: {visit.urls}")

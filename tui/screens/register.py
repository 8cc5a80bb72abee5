"""The registration form: checked field by field as it is typed; the gateway's refusal shown as it is.

A stdio server is registered as the gateway allows it: the name of one of the operator's
`stdio_templates` and a value for each of its slots, never a command line (the gateway's refusal
lists the templates it offers).
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.validation import ValidationResult
from textual.widgets import Button, Input, Label, Select, Static

from tui.errors import Refused, Unreachable
from tui.link import GatewayLink
from tui.validation import HttpUrl, Required, ServerName, SlotValues, slot_values

TRANSPORTS = ("streamable-http", "sse", "stdio")
HTTP_FIELDS = ("url",)
STDIO_FIELDS = ("template", "values")


class RegisterScreen(ModalScreen[str | None]):
    """Dismisses with the new server's name once the gateway accepted it, or None when cancelled."""

    DEFAULT_CSS = """
    RegisterScreen {
        align: center middle;
    }
    RegisterScreen > VerticalScroll {
        width: 76;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    RegisterScreen #title {
        text-style: bold;
        margin-bottom: 1;
    }
    RegisterScreen .row {
        height: 1;
    }
    RegisterScreen .row Label {
        width: 13;
    }
    RegisterScreen .row Input, RegisterScreen .row Select {
        width: 1fr;
    }
    RegisterScreen .error {
        color: $error;
        padding-left: 13;
        height: auto;
        display: none;
    }
    RegisterScreen .error.-shown {
        display: block;
    }
    RegisterScreen #refusal {
        color: $error;
        height: auto;
        margin-top: 1;
    }
    RegisterScreen #buttons {
        height: 1;
        margin-top: 1;
        align-horizontal: right;
    }
    RegisterScreen #buttons Button {
        margin-left: 1;
    }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Register"),
    ]

    refusal: reactive[str] = reactive("")

    def __init__(self, link: GatewayLink) -> None:
        super().__init__()
        self._link = link

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("Register an MCP server", id="title")
            yield from _field("Name", Input(placeholder="weather", id="name", validators=[ServerName()], compact=True))
            with Horizontal(classes="row"):
                yield Label("Transport")
                options = [(name, name) for name in TRANSPORTS]
                yield Select(options, value=TRANSPORTS[0], allow_blank=False, id="transport", compact=True)
            url = Input(placeholder="http://127.0.0.1:8101/mcp", id="url", validators=[HttpUrl()], compact=True)
            yield from _field("URL", url)
            template = Input(placeholder="an operator's stdio template", id="template", compact=True)
            template.validators = [Required("A template")]
            yield from _field("Template", template)
            values = Input(placeholder='slot=value "title=two words"', id="values", compact=True)
            values.validators = [SlotValues()]
            yield from _field("Values", values)
            yield from _field("Description", Input(id="description", compact=True))
            yield from _field("Tags", Input(placeholder="comma, separated", id="tags", compact=True))
            yield from _field("Prefix", Input(placeholder="default: the name", id="prefix", compact=True))
            yield Static(id="refusal")
            with Horizontal(id="buttons"):
                yield Button("Register (ctrl+s)", variant="primary", id="submit", action="screen.submit", compact=True)
                yield Button("Cancel (esc)", id="cancel", action="screen.cancel", compact=True)

    def on_mount(self) -> None:
        self._show_transport_fields(TRANSPORTS[0])
        self.query_one("#name", Input).focus()

    @property
    def transport(self) -> str:
        return str(self.query_one("#transport", Select).value)

    @on(Select.Changed, "#transport")
    def _transport_changed(self, event: Select.Changed) -> None:
        self._show_transport_fields(str(event.value))

    def _show_transport_fields(self, transport: str) -> None:
        for field in (*HTTP_FIELDS, *STDIO_FIELDS):
            shown = (field in STDIO_FIELDS) == (transport == "stdio")
            self.query_one(f"#{field}-row").display = shown
            if not shown:
                self.query_one(f"#{field}-error").set_class(False, "-shown")

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        if event.input.validators:
            self._show_validation(event.input, event.validation_result)

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_submit()

    def _show_validation(self, field: Input, result: ValidationResult | None) -> None:
        error = self.query_one(f"#{field.id}-error", Static)
        messages = [] if result is None or result.is_valid else result.failure_descriptions
        error.update(" ".join(messages))
        error.set_class(bool(messages), "-shown")

    def watch_refusal(self, refusal: str) -> None:
        self.query_one("#refusal", Static).update(refusal)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        invalid = []
        for field in self.query(Input):
            if field.validators and self.query_one(f"#{field.id}-row").display:
                result = field.validate(field.value)
                self._show_validation(field, result)
                if result is not None and not result.is_valid:
                    invalid.append(field)
        if invalid:
            invalid[0].focus()
            return
        self._register(self._arguments())

    def _arguments(self) -> dict[str, Any]:
        def value(field: str) -> str:
            return self.query_one(f"#{field}", Input).value.strip()

        arguments: dict[str, Any] = {"service_name": value("name"), "transport": self.transport}
        if self.transport == "stdio":
            arguments |= {"template": value("template"), "values": slot_values(value("values"))}
        else:
            arguments["url"] = value("url")
        if description := value("description"):
            arguments["description"] = description
        if tags := [tag.strip() for tag in value("tags").split(",") if tag.strip()]:
            arguments["tags"] = tags
        if prefix := value("prefix"):
            arguments["prefix"] = prefix
        return arguments

    @work(exclusive=True, group="register")
    async def _register(self, arguments: dict[str, Any]) -> None:
        submit = self.query_one("#submit", Button)
        submit.disabled = True
        self.refusal = ""
        try:
            await self._link.gateway.register(arguments)
        except Refused as error:
            self.refusal = f"The gateway refused: {error}"
        except Unreachable as error:
            self.refusal = f"The gateway did not answer: {error}"
        else:
            self.dismiss(arguments["service_name"])
            return
        submit.disabled = False


def _field(label: str, field: Input) -> ComposeResult:
    with Horizontal(classes="row", id=f"{field.id}-row"):
        yield Label(label)
        yield field
    yield Static(classes="error", id=f"{field.id}-error")

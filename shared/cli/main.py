"""The ``byom`` command: global options and the verbs of each area."""

from __future__ import annotations

import typer

from shared.cli import calls, registry, up, usage
from shared.cli.context import Options, setting
from shared.subjects import Subjects

app = typer.Typer(
    name="byom",
    help="Run and administer the BYOM gateway.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    nats_url: str = typer.Option(
        "nats://127.0.0.1:4222", envvar="NATS_URL", help="The gateway's NATS."
    ),
    token: str | None = typer.Option(
        None,
        envvar="BYOM_TOKEN",
        help="Bearer token; by default a local admin token from BYOM_AUTH_SECRET.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    inbox_prefix: str | None = typer.Option(
        None,
        envvar="BYOM_INBOX_PREFIX",
        help="Reply inbox prefix of a NATS user limited to its own, e.g. _INBOX.app.",
    ),
) -> None:
    # The same variables that place the services' subjects and streams.
    subjects = Subjects(
        setting("BYOM_SUBJECT_PREFIX") or "byom", setting("BYOM_STREAM_PREFIX") or ""
    )
    ctx.obj = Options(
        nats_url=nats_url,
        token=token or setting("BYOM_TOKEN"),
        as_json=as_json,
        subjects=subjects,
        inbox_prefix=inbox_prefix,
    )


app.command()(up.up)
app.command()(calls.status)
app.command()(calls.chat)
app.command()(usage.usage)
app.command()(calls.token)
app.add_typer(registry.source_app, name="source")
app.add_typer(registry.model_app, name="model")
app.add_typer(registry.access_app, name="access")
app.add_typer(registry.limits_app, name="limits")
app.add_typer(registry.admin_app, name="admin")
app.command()(registry.selector)

"""``byom chat``, ``byom status``, ``byom token``."""

from __future__ import annotations

import os
from typing import Any

import typer

from shared.cli.context import errors, options, setting, table
from shared.client import ByomClient
from shared.identity import mint_token


def chat(
    ctx: typer.Context,
    model: str = typer.Argument(help="Registered model name."),
    message: str = typer.Argument(help="The user message."),
    application: str = typer.Option("workshop", help="Calling application id."),
    project: str = typer.Option("default", help="Project the call belongs to."),
    stream: bool = typer.Option(False, help="Print the answer as it arrives."),
) -> None:
    """Send one chat message to a registered model."""
    request = {"model": model, "messages": [{"role": "user", "content": message}]}
    opts = options(ctx)

    async def call(client: ByomClient) -> dict[str, Any]:
        if not stream:
            return await client.chat(request, application=application, project=project)
        last: dict[str, Any] = {}
        async for chunk in client.chat_stream(
            request, application=application, project=project
        ):
            for choice in chunk.get("choices", []):
                typer.echo(choice.get("delta", {}).get("content") or "", nl=False)
            last = chunk
        typer.echo()
        return last

    reply = opts.run(call)
    if opts.as_json:
        opts.show(reply)
    elif not stream:
        typer.echo(reply["choices"][0]["message"].get("content") or "")
    usage = reply.get("usage") or {}
    if usage and not opts.as_json:
        errors.print(
            f"[dim]{usage.get('prompt_tokens')} prompt + "
            f"{usage.get('completion_tokens')} completion tokens[/dim]"
        )


def status(
    ctx: typer.Context,
    wait: float = typer.Option(0.5, help="Seconds to gather answers."),
) -> None:
    """Show every running replica of every service."""
    opts = options(ctx)
    replies = opts.run(lambda c: c.status(wait))
    replies.sort(key=lambda r: (r["service"], r["instance"]))
    columns = ["service", "instance", "version", "registry_version", "uptime_s"]
    opts.show(replies, lambda v: table("Gateway", columns, v))


def token(
    user: str = typer.Option(os.environ.get("USER") or "admin", help="Subject."),
    group: list[str] = typer.Option([], help="Group claim (repeat)."),
    admin: bool = typer.Option(False, help="Add the enrollment-admin role."),
    ttl: int = typer.Option(3600, help="Lifetime in seconds."),
) -> None:
    """Mint a development token signed with BYOM_AUTH_SECRET."""
    secret = setting("BYOM_AUTH_SECRET")
    if not secret:
        errors.print(
            "[red]error[/red]: BYOM_AUTH_SECRET is not set and no local gateway "
            "(byom up) has generated one"
        )
        raise typer.Exit(1)
    typer.echo(mint_token(secret, user=user, groups=group, admin=admin, ttl_s=ttl))

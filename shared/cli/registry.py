"""``byom source|model|access``: the enrollment administrator's verbs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from shared.cli.context import options, table
from shared.client import ByomClient

source_app = typer.Typer(
    help="Provider endpoints the gateway calls.", no_args_is_help=True
)
model_app = typer.Typer(help="Models registered on sources.", no_args_is_help=True)
access_app = typer.Typer(help="Who may use registered models.", no_args_is_help=True)

SOURCE_COLUMNS = ["rid", "name", "base_url", "auth", "exports_enabled", "roles"]
MODEL_COLUMNS = ["rid", "name", "provider", "provider_model", "enabled", "limits"]


def _sources(value: dict[str, Any]) -> Any:
    rows = value.get("sources", [value])
    return table("Sources", SOURCE_COLUMNS, rows)


def _models(value: dict[str, Any]) -> Any:
    rows = value.get("models", [value])
    return table("Models", MODEL_COLUMNS, rows)


def _auth(kind: str, secret: str | None, header: str) -> dict[str, Any]:
    if kind == "none":
        return {"type": "none"}
    if secret is None:
        raise typer.BadParameter(f"--secret is required with --auth {kind}")
    if kind == "api_key":
        return {"type": "api_key", "header": header, "secret": secret}
    return {"type": kind, "secret": secret}


@source_app.command("create")
def source_create(
    ctx: typer.Context,
    name: str = typer.Argument(help="Unique name of the source."),
    base_url: str = typer.Option(..., help="http(s) URL of the provider endpoint."),
    auth: str = typer.Option("none", help="none, api_key or bearer."),
    secret: str | None = typer.Option(
        None, envvar="BYOM_SOURCE_SECRET", help="API key or token (or env)."
    ),
    header: str = typer.Option("x-api-key", help="Header for --auth api_key."),
    no_exports: bool = typer.Option(False, help="Create with exports disabled."),
) -> None:
    """Create a source (its secret is stored encrypted, never shown)."""
    body = {
        "name": name,
        "base_url": base_url,
        "auth": _auth(auth, secret, header),
        "exports_enabled": not no_exports,
    }
    opts = options(ctx)
    opts.show(opts.run(lambda c: c.registry("source.create", body)), _sources)


@source_app.command("list")
def source_list(ctx: typer.Context) -> None:
    """List sources."""
    opts = options(ctx)
    opts.show(opts.run(lambda c: c.registry("source.list", {})), _sources)


@source_app.command("get")
def source_get(ctx: typer.Context, rid: str) -> None:
    """Show one source."""
    opts = options(ctx)
    opts.show(opts.run(lambda c: c.registry("source.get", {"rid": rid})), _sources)


@model_app.command("register")
def model_register(
    ctx: typer.Context,
    name: str = typer.Argument(help="Unique name clients put in 'model'."),
    source: str = typer.Option(..., help="Source name or rid."),
    provider: str = typer.Option("openai", help="openai, anthropic, bedrock, ..."),
    provider_model: str = typer.Option(..., help="The provider's model id."),
    api: str = typer.Option("openai_chat", help="Endpoint api."),
    path: str = typer.Option("/v1/chat/completions", help="Endpoint path."),
    capability: list[str] = typer.Option([], help="Declared capability (repeat)."),
    rpm: int | None = typer.Option(None, help="Enrollment requests per minute."),
    tpm: int | None = typer.Option(None, help="Enrollment tokens per minute."),
    user_rpm: int | None = typer.Option(None, help="Per-user requests per minute."),
    user_tpm: int | None = typer.Option(None, help="Per-user tokens per minute."),
    spec: Path | None = typer.Option(
        None, "--file", exists=True, help="JSON file with every field instead."
    ),
) -> None:
    """Register a model on a source, from options or a JSON file."""
    if spec is not None:
        body = _json_file(spec)
    else:
        body = {
            "name": name, "provider": provider, "provider_model": provider_model,
            "endpoints": [{"api": api, "path": path, "capabilities": capability}],
            "limits": {
                "enrollment": _level(rpm, tpm), "user": _level(user_rpm, user_tpm)
            },
        }  # fmt: skip
    opts = options(ctx)

    async def register(client: ByomClient) -> dict[str, Any]:
        body["source"] = await _source_rid(client, body.get("source", source))
        return await client.registry("model.register", body)

    opts.show(opts.run(register), _models)


def _level(rpm: int | None, tpm: int | None) -> dict[str, int]:
    return {k: v for k, v in (("rpm", rpm), ("tpm", tpm)) if v is not None}


def _json_file(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text())
    except ValueError as exc:
        raise typer.BadParameter(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise typer.BadParameter(f"{path} must hold a JSON object")
    return body


async def _source_rid(client: ByomClient, source: str) -> str:
    """Accept a source's rid or its name."""
    if source.startswith("ri.byom.source."):
        return source
    listed = await client.registry("source.list", {})
    for found in listed["sources"]:
        if found["name"] == source:
            return str(found["rid"])
    raise typer.BadParameter(f"no source named {source!r}", param_hint="--source")


@model_app.command("list")
def model_list(ctx: typer.Context) -> None:
    """List registered models."""
    opts = options(ctx)
    opts.show(opts.run(lambda c: c.registry("model.list", {})), _models)


@model_app.command("get")
def model_get(ctx: typer.Context, rid: str) -> None:
    """Show one model."""
    opts = options(ctx)
    opts.show(opts.run(lambda c: c.registry("model.get", {"rid": rid})), _models)


def _access(value: dict[str, Any]) -> Any:
    return table(
        "Registered-model access", ["enabled", "groups", "updated_at"], [value]
    )


@access_app.command("set")
def access_set(
    ctx: typer.Context,
    enabled: bool = typer.Option(True, "--enable/--disable"),
    group: list[str] = typer.Option(
        [], help="Limit access to these groups (repeat); none means everyone."
    ),
) -> None:
    """Enable or disable registered-model access."""
    body = {"enabled": enabled, "groups": group or None}
    opts = options(ctx)
    opts.show(opts.run(lambda c: c.registry("access.set", body)), _access)


@access_app.command("get")
def access_get(ctx: typer.Context) -> None:
    """Show registered-model access."""
    opts = options(ctx)
    opts.show(opts.run(lambda c: c.registry("access.get", {})), _access)

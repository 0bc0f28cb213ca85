"""``byom source|model|access|limits|selector|admin``: the registry's verbs.

Every verb prints a table, or the reply as JSON with ``byom --json``.
Sources and models are named by rid or by name.
"""

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
limits_app = typer.Typer(help="Per-project rate limits.", no_args_is_help=True)
admin_app = typer.Typer(help="Registry maintenance.", no_args_is_help=True)

SOURCE_COLUMNS = ["rid", "name", "base_url", "auth", "exports_enabled", "roles"]
MODEL_COLUMNS = ["rid", "name", "provider", "provider_model", "enabled", "limits"]
LIMITS_COLUMNS = ["model_name", "project", "basis", "percent", "rpm", "tpm"]
SELECTOR_COLUMNS = ["name", "provider", "capabilities", "limits"]


def _sources(value: dict[str, Any]) -> Any:
    rows = value.get("sources", [value])
    return table("Sources", SOURCE_COLUMNS, rows)


def _models(value: dict[str, Any]) -> Any:
    rows = value.get("models", [value])
    return table("Models", MODEL_COLUMNS, rows)


def _call(
    ctx: typer.Context, operation: str, body: dict[str, Any], render: Any
) -> None:
    """Send one registry command and print its reply."""
    opts = options(ctx)
    opts.show(opts.run(lambda c: c.registry(operation, body)), render)


def _auth(
    kind: str,
    secret: str | None,
    header: str,
    region: str | None = None,
    access_key_id: str | None = None,
) -> dict[str, Any]:
    if kind == "none":
        return {"type": "none"}
    if secret is None:
        raise typer.BadParameter(f"--secret is required with --auth {kind}")
    if kind == "api_key":
        return {"type": "api_key", "header": header, "secret": secret}
    if kind == "aws_sigv4":
        return {
            "type": kind, "region": region, "access_key_id": access_key_id,
            "secret": secret,
        }  # fmt: skip
    return {"type": kind, "secret": secret}


@source_app.command("create")
def source_create(
    ctx: typer.Context,
    name: str = typer.Argument(help="Unique name of the source."),
    base_url: str = typer.Option(..., help="http(s) URL of the provider endpoint."),
    auth: str = typer.Option(
        "none", help="none, api_key, bearer, aws_sigv4, google_service_account."
    ),
    secret: str | None = typer.Option(
        None, envvar="BYOM_SOURCE_SECRET", help="API key or token (or env)."
    ),
    header: str = typer.Option("x-api-key", help="Header for --auth api_key."),
    region: str | None = typer.Option(None, help="Region for --auth aws_sigv4."),
    access_key_id: str | None = typer.Option(None, help="For --auth aws_sigv4."),
    no_exports: bool = typer.Option(False, help="Create with exports disabled."),
) -> None:
    """Create a source (its secret is stored encrypted, never shown)."""
    body = {
        "name": name,
        "base_url": base_url,
        "auth": _auth(auth, secret, header, region, access_key_id),
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
            "limits": _limits_from(rpm, tpm, user_rpm, user_tpm),
        }  # fmt: skip
    opts = options(ctx)

    async def register(client: ByomClient) -> dict[str, Any]:
        body["source"] = await _source_rid(client, body.get("source", source))
        return await client.registry("model.register", body)

    opts.show(opts.run(register), _models)


def _limits_from(
    rpm: int | None, tpm: int | None, user_rpm: int | None, user_tpm: int | None
) -> dict[str, dict[str, int]]:
    """Build both limit levels, naming the options a level is missing."""
    if rpm is None and tpm is None:
        raise typer.BadParameter("give --rpm or --tpm (or both) for the enrollment")
    if user_rpm is None and user_tpm is None:
        raise typer.BadParameter(
            "give --user-rpm or --user-tpm (or both): every user's level needs one"
        )
    return {"enrollment": _level(rpm, tpm), "user": _level(user_rpm, user_tpm)}


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


@source_app.command("update")
def source_update(
    ctx: typer.Context,
    source: str = typer.Argument(help="Source rid or name."),
    name: str | None = typer.Option(None, help="New unique name."),
    base_url: str | None = typer.Option(None, help="New http(s) URL."),
    port: int | None = typer.Option(None, help="New port."),
    auth: str | None = typer.Option(
        None, help="Replace the auth: none, api_key, bearer, aws_sigv4, ..."
    ),
    secret: str | None = typer.Option(None, envvar="BYOM_SOURCE_SECRET"),
    header: str = typer.Option("x-api-key", help="Header for --auth api_key."),
    region: str | None = typer.Option(None, help="Region for --auth aws_sigv4."),
    access_key_id: str | None = typer.Option(None, help="For --auth aws_sigv4."),
    exports: bool | None = typer.Option(None, "--exports/--no-exports"),
) -> None:
    """Change a source's fields (owner or editor of the source)."""
    fields: dict[str, Any] = {
        "name": name, "base_url": base_url, "port": port, "exports_enabled": exports,
    }  # fmt: skip
    body = {key: value for key, value in fields.items() if value is not None}
    if auth is not None:
        body["auth"] = _auth(auth, secret, header, region, access_key_id)
    opts = options(ctx)

    async def update(client: ByomClient) -> dict[str, Any]:
        rid = await _source_rid(client, source)
        return await client.registry("source.update", {"rid": rid, **body})

    opts.show(opts.run(update), _sources)


@source_app.command("delete")
def source_delete(
    ctx: typer.Context, source: str = typer.Argument(help="Source rid or name.")
) -> None:
    """Delete a source that no model uses (owner of the source)."""
    _by_rid(ctx, "source.delete", source, _source_rid, lambda _: "deleted")


@source_app.command("share")
def source_share(
    ctx: typer.Context,
    source: str = typer.Argument(help="Source rid or name."),
    principal: str = typer.Argument(help="user:<id> or group:<name>."),
    role: str = typer.Argument(help="owner, editor, viewer, or none to remove."),
) -> None:
    """Give a principal a role on a source (owner of the source)."""
    body = {"principal": principal, "role": role}
    _by_rid(ctx, "source.share", source, _source_rid, _sources, body)


@model_app.command("update")
def model_update(
    ctx: typer.Context,
    model: str = typer.Argument(help="Model rid or name."),
    spec: Path | None = typer.Option(
        None, "--file", exists=True, help="JSON file with the fields to change."
    ),
    name: str | None = typer.Option(None, help="New unique name."),
    provider_model: str | None = typer.Option(None, help="The provider's model id."),
    rpm: int | None = typer.Option(None, help="Enrollment requests per minute."),
    tpm: int | None = typer.Option(None, help="Enrollment tokens per minute."),
    user_rpm: int | None = typer.Option(None, help="Per-user requests per minute."),
    user_tpm: int | None = typer.Option(None, help="Per-user tokens per minute."),
) -> None:
    """Change a model's fields (owner or editor of its source).

    Limits are replaced as a whole: give both levels' values.
    """
    body = _json_file(spec) if spec is not None else {}
    fields = {"name": name, "provider_model": provider_model}
    body.update({key: value for key, value in fields.items() if value is not None})
    if any(value is not None for value in (rpm, tpm, user_rpm, user_tpm)):
        body["limits"] = _limits_from(rpm, tpm, user_rpm, user_tpm)
    _by_rid(ctx, "model.update", model, _model_rid, _models, body)


@model_app.command("disable")
def model_disable(ctx: typer.Context, model: str) -> None:
    """Disable a model: every router refuses it within a second."""
    _by_rid(ctx, "model.disable", model, _model_rid, _models)


@model_app.command("enable")
def model_enable(ctx: typer.Context, model: str) -> None:
    """Enable a disabled model."""
    _by_rid(ctx, "model.enable", model, _model_rid, _models)


@model_app.command("delete")
def model_delete(ctx: typer.Context, model: str) -> None:
    """Delete a model (owner or editor of its source)."""
    _by_rid(ctx, "model.delete", model, _model_rid, lambda _: "deleted")


def _by_rid(
    ctx: typer.Context,
    operation: str,
    ref: str,
    resolve: Any,
    render: Any,
    body: dict[str, Any] | None = None,
) -> None:
    """Resolve a name to its rid, then send ``operation`` for that rid."""
    opts = options(ctx)

    async def send(client: ByomClient) -> dict[str, Any]:
        rid = await resolve(client, ref)
        return await client.registry(operation, {"rid": rid, **(body or {})})

    opts.show(opts.run(send), render)


async def _model_rid(client: ByomClient, model: str) -> str:
    """Accept a model's rid or its name."""
    if model.startswith("ri.byom.model."):
        return model
    for found in (await client.registry("model.list", {}))["models"]:
        if found["name"] == model:
            return str(found["rid"])
    raise typer.BadParameter(f"no model named {model!r}", param_hint="MODEL")


def _limits(value: dict[str, Any]) -> Any:
    return table("Project limits", LIMITS_COLUMNS, [value])


@limits_app.command("set")
def limits_set(
    ctx: typer.Context,
    model: str = typer.Argument(help="Model rid or name."),
    project: str = typer.Argument(help="Project id."),
    percent: int | None = typer.Option(None, help="Percent of enrollment limits."),
    rpm: int | None = typer.Option(None, help="Absolute requests per minute."),
    tpm: int | None = typer.Option(None, help="Absolute tokens per minute."),
) -> None:
    """Set a project's limits on a model: a percent, or absolute rpm/tpm."""
    values = {"percent": percent, "rpm": rpm, "tpm": tpm}
    body: dict[str, Any] = {"model": model, "project": project}
    body.update({key: value for key, value in values.items() if value is not None})
    _call(ctx, "project_limits.set", body, _limits)


@limits_app.command("get")
def limits_get(ctx: typer.Context, model: str, project: str) -> None:
    """Show the limits a project gets on a model (70 % unless set)."""
    _call(ctx, "project_limits.get", {"model": model, "project": project}, _limits)


def selector(
    ctx: typer.Context,
    application: str = typer.Argument(help="Application id, e.g. workshop."),
) -> None:
    """List the models the caller may use from an application."""
    _call(
        ctx,
        "selector",
        {"application": application},
        lambda v: table(f"Models for {application}", SELECTOR_COLUMNS, v["models"]),
    )


@admin_app.command("reseal")
def admin_reseal(ctx: typer.Context) -> None:
    """Seal every source secret under the first key of BYOM_SECRET_KEY."""
    _call(
        ctx,
        "admin.reseal",
        {},
        lambda v: (
            f"resealed {v['resealed']} source secret(s): "
            + (", ".join(v["sources"]) or "-")
        ),
    )


@admin_app.command("secret-key")
def admin_secret_key() -> None:
    """Print a new key for BYOM_SECRET_KEY (docs/operations.md)."""
    from shared.secrets import SecretBox

    typer.echo(SecretBox.generate_key())

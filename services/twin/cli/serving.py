"""``twin serve`` and ``twin chat``: the Serve pipeline from the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from twin.cli.common import app, console, err_console, fail, load_profile, load_settings
from twin.domain.errors import TwinError
from twin.domain.profile import TwinProfile
from twin.ports import ServingDeps
from twin.settings import Settings, env_name


def prepare_serving(settings: Settings, twin_profile: TwinProfile) -> ServingDeps:
    """What ``twin serve`` and ``twin demo`` do before starting the application: check the settings
    (InvalidSpec before anything starts), build the deployments' factories, start or join Ray."""
    from twin import wiring

    wiring.validate_serving(settings, twin_profile)
    deps = wiring.serving_deps(settings, twin_profile)
    wiring.ensure_ray(settings)
    return deps


@app.command()
def serve(
    profile: Annotated[Path, typer.Option("--profile", "-p", help="A TwinProfile YAML file.")],
    port: Annotated[
        int | None, typer.Option("--port", help=f"Overrides {env_name('serving', 'port')}.")
    ] = None,
) -> None:
    """Serve the twin on an OpenAI-compatible endpoint (Ray Serve; vLLM or transformers) until stopped."""
    from twin.serving.runner import serve_forever

    overrides: dict[str, Any] = {}
    base = load_settings()
    if port is not None:
        overrides["serving"] = base.serving.model_copy(update={"port": port})
    settings = base.model_copy(update=overrides)
    try:
        twin_profile = load_profile(profile)
    except TwinError as exc:
        raise fail(exc) from exc

    def ready(url: str, status: dict[str, Any]) -> None:
        version = status.get("model_version")
        weights = f"version {version}" if version else "base model, no champion yet"
        console.print(
            f"[green]serving[/green] {url}/v1 · model [bold]twin-{twin_profile.name}[/bold] ({weights})"
            f" · engine {status['engine']}"
        )

    err_console.print("starting Ray Serve, the engine and the registry watcher...")
    try:
        deps = prepare_serving(settings, twin_profile)
        serve_forever(twin_profile, settings.serving, deps, on_ready=ready)
    except TwinError as exc:
        raise fail(exc) from exc


def print_sources(citations: list[dict[str, Any]], out: Console) -> None:
    """The answer's sources from ``twin.citations``: one line per distinct URL, numbered as cited."""
    seen: set[str] = set()
    lines = []
    for c in citations:
        if c["url"] not in seen:
            seen.add(c["url"])
            lines.append(f"[{c['index']}] {c['title']} — {c['url']}")
    if lines:
        out.print("\nSources:\n" + "\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def chat_stream(
    question: str, *, url: str, api_key: str, model: str, max_tokens: int, out: Console
) -> dict[str, Any]:
    """Stream one answer with the openai client and print it, then its sources (``twin.citations``).
    Returns the answer's ``twin`` extension."""
    import openai

    client = openai.OpenAI(base_url=f"{url.rstrip('/')}/v1", api_key=api_key, timeout=600)
    info: dict[str, Any] = {}
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], max_tokens=max_tokens, stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            out.print(chunk.choices[0].delta.content, end="", markup=False, highlight=False, soft_wrap=True)
        extra = (chunk.model_extra or {}).get("twin")
        if extra:
            info = extra
    out.print()
    print_sources(info.get("citations") or [], out)
    return info


@app.command()
def chat(  # noqa: PLR0917 -- typer maps each parameter to an option
    question: Annotated[str, typer.Argument(help="What to ask the twin.")],
    profile: Annotated[str, typer.Option("--profile", "-p", help="Profile name (metadata.name).")],
    url: Annotated[
        str | None, typer.Option("--url", help="The server (default: this machine's twin serve).")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key", envvar="TWIN_API_KEY", help=f"Default: the first {env_name('serving', 'api_keys')}."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Default: twin-<profile> (the champion).")
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 256,
) -> None:
    """Ask the twin a question from the terminal (streams the answer, then its sources)."""
    import openai

    from twin.wiring import load_api_keys

    settings = load_settings()
    keys = load_api_keys(settings)
    key = api_key or (keys[0] if keys else "none")
    base = url or f"http://{settings.serving.host}:{settings.serving.port}"
    try:
        info = chat_stream(
            question,
            url=base,
            api_key=key,
            model=model or f"twin-{profile}",
            max_tokens=max_tokens,
            out=console,
        )
    except openai.APIStatusError as exc:
        err_console.print(f"[red]error {exc.status_code}:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    except openai.APIConnectionError as exc:
        err_console.print(f"[red]error:[/red] no twin server at {base}: {exc}")
        raise typer.Exit(1) from exc
    version = info.get("model_version")
    console.print(f"[dim]model version {version if version else '(base model)'}[/dim]")

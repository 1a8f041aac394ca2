"""The ``radstream`` command tree.

Sub-commands live one module each under ``radstream.cli`` and are imported only
when used, so ``radstream sql`` does not pay for spaCy start-up.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Any

import click

from radstream.config import ConfigError, Settings, load_settings, validate

# command name -> "module:attribute" (a click.Command or click.Group)
COMMANDS: dict[str, str] = {
    "stack": "radstream.cli.stack:stack",
    "topics": "radstream.cli.topics:topics",
    "ingest": "radstream.cli.ingest:ingest",
    "backfill": "radstream.cli.backfill:backfill",
    "worker": "radstream.cli.worker:worker",
    "db": "radstream.cli.db:db",
    "sql": "radstream.cli.sql:sql",
    "nlp": "radstream.cli.nlp:nlp",
    "text": "radstream.cli.text:text",
    "retrieve": "radstream.cli.retrieve:retrieve",
    "project": "radstream.cli.project:project",
    "cohort": "radstream.cli.cohort:cohort",
    "dicom": "radstream.cli.dicom:dicom",
    "similar": "radstream.cli.similar:similar",
    "model": "radstream.cli.model:model",
    "demo": "radstream.cli.demo:demo",
    "auth": "radstream.cli.auth:auth",
    "audit": "radstream.cli.audit:audit",
    "web": "radstream.cli.web:web",
}

# sub-commands that live in their own module but belong to a group above
SUBCOMMANDS: dict[str, tuple[str, ...]] = {
    "cohort": ("radstream.cli.watch:watch", "radstream.cli.watch:unwatch", "radstream.cli.watch:watches"),
}


class LazyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        """A record Kafka did not confirm ends a command with one line, not a traceback (commands that know
        what was left undone say so themselves first: ``kafka_unconfirmed``)."""
        from streams.producer import DeliveryError

        try:
            return super().invoke(ctx)
        except DeliveryError as exc:
            settings = ctx.obj if isinstance(ctx.obj, Settings) else None
            raise click.ClickException(kafka_unconfirmed(settings, exc)) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, target in COMMANDS.items() if _exists(target) or n in SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        cmd: click.Command
        if _exists(target):
            cmd = _load(target)
        elif cmd_name in SUBCOMMANDS:
            cmd = click.Group(cmd_name, help=f"{cmd_name} commands")
        else:
            return None
        if isinstance(cmd, click.Group):
            for sub in SUBCOMMANDS.get(cmd_name, ()):
                sub_cmd = _load(sub)
                if sub_cmd.name not in cmd.commands:
                    cmd.add_command(sub_cmd)
        return cmd


def kafka_unconfirmed(settings: Settings | None, exc: BaseException) -> str:
    """Why a record was not confirmed, for the user: what Kafka said, where, and what to do."""
    where = f" at {settings.kafka.bootstrap}" if settings is not None else ""
    return (f"Kafka{where} did not confirm the record ({exc}): it may or may not have been written (a "
            "broker that took it late still has it). Is Kafka running and reachable (`radstream stack "
            "status` for the local stack)? When it is, check before trying again (e.g. "
            "`radstream project show`, the retrieval tables) so that nothing is done twice")


def _exists(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


def _load(target: str) -> click.Command:
    module, attr = target.split(":")
    cmd: click.Command = getattr(importlib.import_module(module), attr)
    return cmd


@click.group(cls=LazyGroup)
@click.option("--config", "config_file", envvar="RADSTREAM_CONFIG", default=None,
              type=click.Path(dir_okay=False), help="TOML config file (env vars override it).")
@click.version_option(package_name=None, version=__import__("radstream").__version__)
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """radstream: radiology reports -> Kafka -> NLP -> ClickHouse -> DICOM retrieval."""
    from streams.logs import RateLimit

    # librdkafka logs every refused connection, ~7 lines a second: a command that waits 10 s for a broker
    # that is down printed ~70 of them (review r16); one per kind per 10 s, as the worker's log has
    rdkafka = logging.getLogger("radstream.librdkafka")  # streams.producer, streams.loop, streams.topics
    if not any(isinstance(f, RateLimit) for f in rdkafka.filters):
        rdkafka.addFilter(RateLimit())
    ctx.obj = load_settings(config_file=config_file)


def settings_of(ctx: click.Context) -> Settings:
    """The Settings object of the running command (use with ``@click.pass_context``)."""
    obj: Any = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else load_settings()


EX_CONFIG = 78  # sysexits.h: configuration error


class ConfigProblem(click.ClickException):
    exit_code = EX_CONFIG


def checked_settings(ctx: click.Context) -> Settings:
    """``settings_of`` validated in full (``radstream.config.validate``): a long-running command calls
    this first, so a bad config ends it with one message listing every problem, before it connects."""
    try:
        return validate(settings_of(ctx))
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None

"""Which package index an agent's image builds use: the one this machine is set up for.

uv reads no configuration of pip's, but a machine is usually set up for pip (``pip.conf``,
``PIP_INDEX_URL``, …). So pip's index settings, read as pip reads them, become uv's
variables, unless the agent's environment already sets any ``UV_`` index variable: then uv's
own settings (those variables and its ``uv.toml``) are used as they are.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: uv's own index settings: with any of them set, pip's are not read.
UV_INDEX_VARIABLES = (
    "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL", "UV_INDEX", "UV_FIND_LINKS",
    "UV_NO_INDEX", "UV_CONFIG_FILE",
)  # fmt: skip
#: pip's settings (``pip.conf`` keys, ``PIP_`` variables) that say where packages come from.
PIP_KEYS = ("index-url", "extra-index-url", "find-links", "cert")


def uv_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that give uv pip's index settings; none if uv is set up itself."""
    if any(environ.get(name) for name in UV_INDEX_VARIABLES):
        return {}
    pip = pip_settings(environ)
    found: dict[str, str] = {}
    if pip.get("index-url"):
        found["UV_INDEX_URL"] = pip["index-url"].split()[0]
    if pip.get("extra-index-url"):
        found["UV_EXTRA_INDEX_URL"] = " ".join(pip["extra-index-url"].split())
    if pip.get("find-links"):
        found["UV_FIND_LINKS"] = ",".join(pip["find-links"].split())
    if found and not environ.get("UV_INDEX_STRATEGY"):
        # pip takes the best version any index has; uv's default stops at the first index
        # that has the package (a local mirror with one version would hide the others).
        found["UV_INDEX_STRATEGY"] = "unsafe-best-match"
    if pip.get("cert") and not environ.get("SSL_CERT_FILE"):
        found["SSL_CERT_FILE"] = pip["cert"]
    return found


def pip_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """pip's index settings for ``pip install``: its files in pip's order (global, user, site,
    ``PIP_CONFIG_FILE``; later wins, ``[install]`` over ``[global]``), then ``PIP_`` variables."""
    settings: dict[str, str] = {}
    for path in _config_files(environ):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeError):
            continue  # pip would refuse it too; uv then uses its defaults
        for section in ("global", "install"):
            if parser.has_section(section):
                for key, value in parser.items(section):
                    key = key.replace("_", "-")
                    if key in PIP_KEYS:
                        settings[key] = value
    for key in PIP_KEYS:
        variable = environ.get("PIP_" + key.upper().replace("-", "_"))
        if variable:
            settings[key] = variable
    return settings


def _config_files(environ: Mapping[str, str]) -> Iterator[Path]:
    given = environ.get("PIP_CONFIG_FILE")
    if given == os.devnull:
        return
    dirs = environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    for folder in dirs.split(os.pathsep):
        yield Path(folder) / "pip" / "pip.conf"
    yield Path("/etc/pip.conf")
    if not (given and os.path.exists(given)):
        home = Path(environ.get("HOME") or Path.home())
        yield home / ".pip" / "pip.conf"
        yield Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf"
    yield Path(sys.prefix) / "pip.conf"
    if given:
        yield Path(given)


def local_sources(variables: Mapping[str, str]) -> list[Path]:
    """The folders and files of this machine that uv's settings in ``variables`` name: local
    indexes (``file://``; with the folder above, where a mirror's files usually are), find-links
    folders, the certificates, uv's configuration. A sandboxed ``uv pip install`` sees these."""
    found = []
    for name in ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL", "UV_INDEX"):
        for entry in variables.get(name, "").split():
            path = _local(entry.partition("=")[2] if "=" in entry.split("://")[0] else entry)
            if path is not None:
                found += [path, path.parent]
    for entry in variables.get("UV_FIND_LINKS", "").split(","):
        found += [p for p in [_local(entry.strip())] if p is not None]
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "UV_CONFIG_FILE"):
        found += [p for p in [_local(variables.get(name, ""))] if p is not None]
    found.append(Path("/etc/uv"))
    return [p for p in dict.fromkeys(found) if p.exists()]


def _local(location: str) -> Path | None:
    if location.startswith("file://"):
        location = unquote(urlsplit(location).path)
    return Path(location) if location.startswith("/") else None

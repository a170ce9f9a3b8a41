"""Image builds use the package index this machine is set up for: pip's settings, read as pip
reads them, become uv's variables, unless uv is set up itself."""

from __future__ import annotations

import os
from pathlib import Path

from conveyor.server.agent.package_index import local_sources, pip_settings, uv_variables

INDEX_KEYS = ("UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS", "UV_INDEX_STRATEGY")


def _indexes(found: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in found.items() if k in INDEX_KEYS}


def test_pips_files_in_order_then_its_variables(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text(
        "[global]\nindex-url = https://user.example/simple\n"
        "extra-index-url =\n    https://one.example/simple\n    https://two.example/simple\n"
    )
    environ = {"HOME": str(home), "XDG_CONFIG_DIRS": str(tmp_path / "none")}
    assert _indexes(uv_variables(environ)) == {
        "UV_INDEX_URL": "https://user.example/simple",
        "UV_EXTRA_INDEX_URL": "https://one.example/simple https://two.example/simple",
        "UV_INDEX_STRATEGY": "unsafe-best-match",  # pip takes the best version of any index
    }
    given = tmp_path / "given.conf"  # PIP_CONFIG_FILE: over the others, [install] over [global]
    given.write_text(
        "[global]\nindex_url = https://given.example/simple\n"
        "[install]\nfind-links = /srv/wheels /srv/more\n"
    )
    environ["PIP_CONFIG_FILE"] = str(given)
    assert _indexes(uv_variables(environ)) == {
        "UV_INDEX_URL": "https://given.example/simple",  # (the user's file is then not read)
        "UV_FIND_LINKS": "/srv/wheels,/srv/more",
        "UV_INDEX_STRATEGY": "unsafe-best-match",
    }
    environ["PIP_INDEX_URL"] = "https://variable.example/simple"
    assert pip_settings(environ)["index-url"] == "https://variable.example/simple"


def test_uvs_own_settings_win_and_no_files_means_uvs_defaults(tmp_path: Path) -> None:
    environ = {"PIP_INDEX_URL": "https://pip.example/simple", "UV_INDEX_URL": "https://uv.x/s"}
    assert uv_variables(environ) == {}
    nothing = {"PIP_CONFIG_FILE": os.devnull, "SSL_CERT_FILE": "/etc/ssl/cert.pem"}
    assert uv_variables(nothing) == {}
    cert = {"PIP_CONFIG_FILE": os.devnull, "PIP_CERT": "/etc/ssl/mine.pem"}
    assert uv_variables(cert) == {"SSL_CERT_FILE": "/etc/ssl/mine.pem"}


def test_the_local_indexes_a_sandboxed_build_must_see(tmp_path: Path) -> None:
    mirror, wheels = tmp_path / "pypi" / "simple", tmp_path / "wheels"
    mirror.mkdir(parents=True)
    wheels.mkdir()
    variables = {
        "UV_EXTRA_INDEX_URL": f"file://{mirror} https://pypi.example/simple",
        "UV_INDEX": f"local=file://{mirror}",
        "UV_FIND_LINKS": f"{wheels},https://wheels.example/",
        "SSL_CERT_FILE": str(tmp_path / "missing.pem"),
    }
    found = local_sources(variables)
    assert [p for p in found if p.is_relative_to(tmp_path)] == [mirror, mirror.parent, wheels]

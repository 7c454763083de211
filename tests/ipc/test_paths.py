"""The socket path rule, the same for server and clients."""

from __future__ import annotations

from pathlib import Path

import pytest

from ult_actors.errors import ConfigError
from ult_actors.ipc.paths import resolve_socket


def test_the_socket_path_follows_the_documented_order() -> None:
    env = {
        "ULT_SOCKET": "/a/env.sock",
        "RUNTIME_DIRECTORY": "/run/ult-actors:/run/other",
        "XDG_RUNTIME_DIR": "/run/user/1000",
    }
    assert resolve_socket("/x/flag.sock", env, 1000).path == Path("/x/flag.sock")
    assert resolve_socket(None, env, 1000).path == Path("/a/env.sock")
    del env["ULT_SOCKET"]
    loc = resolve_socket(None, env, 1000)
    assert (loc.path, loc.dedicated) == (Path("/run/ult-actors/ult.sock"), True)
    del env["RUNTIME_DIRECTORY"]
    assert resolve_socket(None, env, 1000).path == Path("/run/user/1000/ult/ult.sock")
    assert resolve_socket(None, {}, 1000).path == Path("/tmp/ult-1000/ult.sock")
    assert resolve_socket("/x/flag.sock", {}, 1000).dedicated is False


def test_a_path_too_long_for_a_unix_socket_is_refused_with_its_length() -> None:
    with pytest.raises(ConfigError, match=r"at most 107"):
        resolve_socket("/tmp/" + "d" * 120 + "/ult.sock", {}, 0)

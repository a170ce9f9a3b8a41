"""The environment a container's processes get: the queue's ``env``, then its secrets (DESIGN
A9), read and decrypted when the container starts, so an updated secret reaches every
container started afterwards and none before."""

from __future__ import annotations

from conveyor.errors import SecretNotFound
from conveyor.server.agent.runtime import StubRuntime
from conveyor.server.secret_key import SecretKey
from conveyor.server.store.base import Store


async def container_environment(
    store: Store, key: SecretKey, runtime: StubRuntime
) -> dict[str, str]:
    """``SecretNotFound`` naming the first secret the workspace lacks; ``SecretKeyError``
    when this agent's key cannot decrypt one."""
    env = dict(runtime.config.env)
    names = runtime.config.secrets
    if not names:
        return env
    found = await store.secret_ciphertexts(runtime.stub.workspace_id, names)
    for name in names:
        if name not in found:
            raise SecretNotFound(
                f"secret {name!r} does not exist in the workspace of queue "
                f"{runtime.stub.name!r}: create it (conveyor secret create {name} -)"
            )
        env[name] = key.decrypt(name, found[name])
    return env

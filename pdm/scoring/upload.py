"""Sending a bundle to an appliance as a machine's candidate (``pdm-edge train --send``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pdm.errors import ModelError
from pdm.scoring.signing import BUNDLE_FILES, SIGNATURE_FILE, check_contents

__all__ = ["send_bundle"]

#: Largest answer :func:`send_bundle` reads from the appliance, bytes.
_MAX_ANSWER_BYTES = 64 * 1024


def send_bundle(
    model_dir: str | os.PathLike[str],
    api_url: str,
    machine: str,
    *,
    token: str | None = None,
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Upload ``model_dir`` to an appliance as ``machine``'s candidate (``PUT
    /models/<machine>/candidate``, docs/service.md): the tar.gz of the bundle's files, nothing
    else. Returns the service's answer (the candidate runs in shadow until promoted).

    Raises :class:`ModelError` with the service's one-line reason when it refuses, and when
    it cannot be reached. The token is sent as a bearer token, never printed.
    """
    import io
    import tarfile
    from urllib.parse import quote

    import httpx

    directory = Path(model_dir)
    names = [n for n in (*BUNDLE_FILES, SIGNATURE_FILE) if (directory / n).is_file()]
    check_contents(directory, signed=SIGNATURE_FILE in names)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for n in names:
            tar.add(directory / n, arcname=n, recursive=False)
    url = api_url.rstrip("/") + f"/models/{quote(machine, safe='')}/candidate"
    headers = {"Content-Type": "application/gzip"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with httpx.stream(
            "PUT", url, content=buf.getvalue(), headers=headers, timeout=timeout_s
        ) as r:
            # The answer is a small JSON object: read no more than that from whoever answers.
            body = b""
            for chunk in r.iter_bytes():
                body += chunk
                if len(body) > _MAX_ANSWER_BYTES:
                    raise ModelError(f"{url}: the answer is over {_MAX_ANSWER_BYTES} bytes")
    except httpx.HTTPError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{url}: cannot send the model: {first}") from None
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    if r.status_code != 202:
        why = answer.get("error")
        why = why.splitlines()[0][:500] if isinstance(why, str) and why else r.reason_phrase
        raise ModelError(f"{url}: the appliance refused the model (HTTP {r.status_code}): {why}")
    return answer

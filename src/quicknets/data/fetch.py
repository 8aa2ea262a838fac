"""Download the four IDX files from the official mirrors (the ones torchvision lists).

`$QUICKNETS_MIRROR` (a URL prefix, file:// included) replaces the mirrors: for a local copy, or
for tests. Each .gz is checked against torchvision's MD5, and the four are saved only once all
four arrived: a failed fetch leaves no partial set behind to be mistaken for the user's files.
"""

import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from quicknets.base.errors import QuicknetsError
from quicknets.base.storage import atomic_write_bytes
from quicknets.data.datasets import FILES, DatasetInfo


def _sources(info: DatasetInfo) -> tuple[list, dict]:
    """(mirror URL prefixes, {file name: md5})."""
    import torchvision.datasets as tvd  # heavy: only when a download is needed

    cls = getattr(tvd, info.torchvision_name)
    md5s = {name: md5 for name, md5 in cls.resources}
    mirrors = list(cls.mirrors)
    if os.environ.get("QUICKNETS_MIRROR"):
        mirrors = [os.environ["QUICKNETS_MIRROR"].rstrip("/") + "/"]
    return mirrors, md5s


def fetch_files(info: DatasetInfo, target: Path, timeout: float = 30.0) -> tuple[dict, str]:
    """Fetch the four .gz files into `target`: ({key: path}, "") or ({}, why it failed)."""
    mirrors, md5s = _sources(info)
    contents = {}  # key -> (url, bytes): held until all four arrived (30 MB for Fashion-MNIST)
    for key, stem in FILES.items():
        name = f"{stem}.gz"
        errors = []
        for mirror in mirrors:
            url = mirror + name
            try:
                with urllib.request.urlopen(url, timeout=timeout) as r:
                    content = r.read()
            except (urllib.error.URLError, OSError, ValueError) as e:
                errors.append(f"{url}: {getattr(e, 'reason', e)}")
                continue
            digest = hashlib.md5(content).hexdigest()
            if name in md5s and digest != md5s[name]:
                raise QuicknetsError(
                    f"{url} sent a file whose MD5 {digest} is not the official "
                    f"{md5s[name]}; nothing was saved"
                )
            contents[key] = url, content
            break
        else:
            return {}, "; ".join(errors)
    found = {}
    for key, (url, content) in contents.items():
        found[key] = target / f"{FILES[key]}.gz"
        try:
            atomic_write_bytes(found[key], content)
        except OSError as e:
            raise QuicknetsError(f"cannot save {found[key]}: {e.strerror or e}") from None
        print(f"fetched {url} -> {found[key]}", file=sys.stderr)
    return found, ""

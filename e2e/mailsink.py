"""An aiosmtpd handler that writes every received message to a directory as JSON.

Run as its own process (what `e2e/run.py` does):

    python -m aiosmtpd -n -l 127.0.0.1:2525 -c e2e.mailsink.FileSink /tmp/mail

Each message becomes `<seq>.json` = {"to": [...], "subject": "...", "text": "..."} where
`text` holds every text part, decoded. Files are written under a temporary name and
renamed, so a reader never sees half a message. The Node scripts and the schemathesis
run read the one-time codes from there.
"""

from __future__ import annotations

import itertools
import json
import os
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path
from typing import Any


def message_text(message: Message) -> str:
    parts = message.walk() if message.is_multipart() else [message]
    chunks = []
    for part in parts:
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                chunks.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(chunks)


class FileSink:
    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq = itertools.count(1)

    @classmethod
    def from_cli(cls, parser: Any, *args: str) -> FileSink:
        if len(args) != 1:
            parser.error("FileSink takes one argument: the directory to write messages to")
        return cls(args[0])

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content or envelope.content)
        record = {
            "to": [str(rcpt).lower() for rcpt in envelope.rcpt_tos],
            "subject": str(make_header(decode_header(str(message["Subject"] or "")))),
            "text": message_text(message),
        }
        name = f"{os.getpid()}-{next(self._seq):06d}.json"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        tmp.replace(self.directory / name)
        return "250 OK"

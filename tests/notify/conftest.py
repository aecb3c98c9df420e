"""The session's SMTP server's port (tests/fixtures/mail.py) and a signature-checking HTTP
receiver, in this process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.accounts.smtp import Inbox
from tests.notify.receiver import Receiver, receiving
from tests.secrets.helpers import secret_value


@pytest.fixture
def smtp_port(smtp: tuple[Inbox, int]) -> int:
    return smtp[1]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving(secret_value()) as record:
        yield record

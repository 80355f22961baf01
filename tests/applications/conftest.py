import os

import pytest


@pytest.fixture
def umask_022():
    """Run the test under the usual umask 022 (files 0644, folders 0755), whatever the runner's umask."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)

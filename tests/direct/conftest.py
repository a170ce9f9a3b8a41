"""The integration suite's harness (an in-process agent on both stores) for the direct producer."""

from tests.integration.conftest import harness as harness
from tests.integration.conftest import workspace as workspace

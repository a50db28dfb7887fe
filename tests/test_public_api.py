import subprocess
import sys

import eventcore


def test_all_is_sorted_and_every_name_exists() -> None:
    assert eventcore.__all__ == sorted(eventcore.__all__)
    missing = [name for name in eventcore.__all__ if not hasattr(eventcore, name)]
    assert missing == []


def test_every_public_module_level_name_is_in_all() -> None:
    public = {
        name
        for name, value in vars(eventcore).items()
        if not name.startswith("_") and not isinstance(value, type(eventcore))
    }
    assert public == set(eventcore.__all__)


def test_importing_eventcore_pulls_in_no_heavy_dependency() -> None:
    code = (
        "import sys, eventcore; "
        "heavy = [m for m in ('psycopg', 'psycopg_pool', 'asyncpg', 'prometheus_client', "
        "'pydantic', 'aiohttp', 'starlette', 'click', 'rich') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

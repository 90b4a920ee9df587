import os

# Kedro's telemetry would try the network, which tests must never touch.
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")


def base_params(group: str, **overrides):
    """``params:<group>`` as ``conf/base/parameters_<group>.yml`` declares it, with ``overrides`` applied."""
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[1] / "conf" / "base" / f"parameters_{group}.yml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))[group]
    return {**params, **overrides}

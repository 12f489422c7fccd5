"""Where files go on a laptop, a Space and a Space with persistent storage (talkplay.space)."""

from pathlib import Path

from talkplay.space import cache_root, on_space, persistent_dir, zero_gpu


def test_cache_root_follows_the_platform(tmp_path):
    home = Path.home()
    assert cache_root({}) == home / ".cache" / "talkplay"
    assert cache_root({"XDG_CACHE_HOME": "/xdg"}) == Path("/xdg/talkplay")
    assert cache_root({"TALKPLAY_CACHE": "/c", "XDG_CACHE_HOME": "/xdg"}) == Path("/c")
    volume = tmp_path / "data"
    space = {"SPACE_ID": "u/s", "TALKPLAY_PERSISTENT_DIR": str(volume)}
    assert persistent_dir(space) is None and cache_root(space) == home / ".cache" / "talkplay"  # none mounted
    volume.mkdir()
    assert persistent_dir(space) == volume
    assert cache_root(space) == volume / "talkplay" / "cache"  # survives a restart
    assert cache_root({**space, "TALKPLAY_CACHE": "/c"}) == Path("/c")  # an explicit setting wins
    assert persistent_dir({"TALKPLAY_PERSISTENT_DIR": str(volume)}) is None  # only a Space has one


def test_space_and_zero_gpu_flags():
    assert not on_space({}) and on_space({"SPACE_ID": "u/s"})
    assert not zero_gpu({}) and zero_gpu({"SPACES_ZERO_GPU": "true"}) and not zero_gpu({"SPACES_ZERO_GPU": "false"})


def test_space_front_matter_matches_the_pins():
    """Spaces install the Gradio of ``sdk_version`` (not requirements.txt's) and run ``app_file``: they must agree."""
    import re

    repo = Path(__file__).resolve().parents[2]
    readme = (repo / "README.md").read_text(encoding="utf-8")
    front = readme.split("---")[1]
    meta = dict(re.findall(r"^(\w+):\s*\"?([^\"\n]+)\"?$", front, flags=re.M))
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", (repo / "requirements.txt").read_text(), flags=re.M))
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == pins["gradio"]
    assert (repo / meta["app_file"]).is_file() and meta["python_version"] == "3.11"

"""Settings survive restarts, and a damaged file never stops the app."""

import json

from desktop.core.settings import LoadOptions, Sampling, Settings, SettingsFile


def test_a_new_install_starts_with_the_defaults(tmp_path):
    settings = SettingsFile(tmp_path / "settings.json").load()
    assert settings == Settings()
    assert settings.sampling.temperature == 0.7
    assert settings.load.n_ctx == 4096


def test_saved_settings_come_back_after_a_restart(tmp_path):
    f = SettingsFile(tmp_path / "settings.json")
    chosen = Settings(sampling=Sampling(temperature=0.2, seed=42), load=LoadOptions(n_ctx=2048),
                      system_prompt="Be brief.", last_model="m1")
    f.save(chosen)
    assert SettingsFile(tmp_path / "settings.json").load() == chosen


def test_a_damaged_file_is_set_aside_and_defaults_are_used(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("{ not json")
    assert SettingsFile(path).load() == Settings()
    assert (tmp_path / "settings.damaged.json").read_text() == "{ not json"


def test_values_of_the_wrong_type_fall_back_to_their_defaults(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"sampling": {"temperature": "hot", "top_k": 7, "max_tokens": 1.5},
                                "load": {"n_ctx": 1024}, "system_prompt": 3, "unknown": True}))
    s = SettingsFile(path).load()
    assert s.sampling.temperature == 0.7
    assert s.sampling.top_k == 7
    assert s.sampling.max_tokens == 1024
    assert s.load.n_ctx == 1024
    assert s.system_prompt == Settings().system_prompt

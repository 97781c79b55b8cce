"""What the installed llama.cpp build is: AMX builds load without extra buffer types, others with them."""

from __future__ import annotations

import llama_cpp

from kaihe_desktop.core.machine.llama_build import extra_buffers_usable, llama_system_info
from kaihe_desktop.core.machine.probe import llama_extra_buffers, probe
from kaihe_desktop.core.machine.spec import Machine, ProbeNote


def test_system_info_is_llama_cpps_build_summary_read_once() -> None:
    info = llama_system_info()
    assert info == llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    assert "CPU :" in info and "AVX" in info
    assert llama_system_info() is info  # cached: the native call happens once per process


def test_extra_buffers_are_off_exactly_for_builds_with_amx() -> None:
    build_has_amx = any(f"{name} = 1" in llama_system_info() for name in ("AMX_INT8", "AMX_BF16"))
    assert extra_buffers_usable() is not build_has_amx


def test_probe_records_the_builds_extra_buffers_without_a_note() -> None:
    notes: list[ProbeNote] = []
    assert llama_extra_buffers(notes=notes) == extra_buffers_usable() and notes == []
    machine = probe(measure_bandwidth=False)
    assert machine.llama_extra_buffers == extra_buffers_usable()


def test_profiles_keep_the_setting_and_old_ones_default_to_extra_buffers() -> None:
    machine = probe(measure_bandwidth=False)
    data = machine.to_dict()
    for value in (True, False):
        assert Machine.from_dict({**data, "llama_extra_buffers": value}).llama_extra_buffers is value
    del data["llama_extra_buffers"]  # a profile saved before the field existed
    assert Machine.from_dict(data).llama_extra_buffers is True

"""Device profiles as data: the shipped YAML, an extra file, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.runtime.profiles import (
    DeviceProfile,
    ProfilesFileError,
    builtin_profiles,
    load_profiles,
    parse_profiles,
)


class TestBuiltinProfiles:
    def test_stub_is_small_and_uses_rfb_readiness(self) -> None:
        stub = builtin_profiles()["stub"]
        assert stub.image == "provisioner/device-stub:latest"
        assert stub.vnc_port == 5900
        assert stub.readiness.kind == "rfb"
        assert stub.devices == []
        assert stub.nano_cpus <= 1_000_000_000

    def test_android_asks_for_kvm_and_waits_for_device_status(self) -> None:
        android = builtin_profiles()["android"]
        assert android.image.startswith("budtmo/docker-android:emulator_")
        assert (android.vnc_port, android.adb_port) == (5900, 5555)
        assert android.devices == ["/dev/kvm"]
        assert android.no_new_privileges is False
        assert android.device_mappings() == ["/dev/kvm:/dev/kvm:rwm"]
        assert android.env["WEB_VNC"] == "false"
        assert android.env["USER_BEHAVIOR_ANALYTICS"] == "false"
        assert "EMULATOR_DEVICE" in android.env
        assert android.readiness.kind == "status_file"
        assert android.readiness.probe_command() == ["cat", "/home/androidusr/device_status"]
        assert android.readiness.ready_value == "READY"
        assert android.nano_cpus > builtin_profiles()["stub"].nano_cpus

    def test_every_profile_drops_all_capabilities_and_adds_back_only_its_own(self) -> None:
        profiles = builtin_profiles()
        for profile in profiles.values():
            assert profile.hardening()["cap_drop"] == ["ALL"]
            assert profile.pids_limit > 0
        for name in ("stub", "stub-slow"):
            stub = profiles[name].hardening()
            assert (stub["cap_add"], stub["read_only"], stub["user"]) == ([], True, "1000:1000")
            assert stub["security_opt"] == ["no-new-privileges"]
        android = profiles["android"]
        assert "SYS_ADMIN" not in android.cap_add and "NET_RAW" not in android.cap_add

    def test_all_or_sys_admin_cannot_be_added_back(self) -> None:
        with pytest.raises(ProfilesFileError, match="SYS_ADMIN"):
            parse_profiles("profiles: {x: {image: i, cap_add: [cap_sys_admin]}}", source="t")


class TestExtraProfilesFile:
    def test_extra_file_adds_and_overrides(self, tmp_path: Path) -> None:
        extra = tmp_path / "profiles.yaml"
        extra.write_text(
            "profiles:\n"
            "  stub:\n"
            "    image: registry.local/stub:2\n"
            "  pixel:\n"
            "    image: budtmo/docker-android:emulator_13.0\n"
            "    env: {WEB_VNC: false, PORT: 5}\n"
            "    devices: [/dev/kvm]\n"
            "    readiness: {kind: exec, command: [adb, shell, getprop, sys.boot_completed], ready_value: '1'}\n"
        )
        profiles = load_profiles(extra)
        assert profiles["stub"].image == "registry.local/stub:2"
        assert profiles["android"].image.startswith("budtmo/")
        pixel = profiles["pixel"]
        assert pixel.name == "pixel"
        assert pixel.env == {"WEB_VNC": "false", "PORT": "5"}
        assert pixel.readiness.probe_command() == ["adb", "shell", "getprop", "sys.boot_completed"]

    @pytest.mark.parametrize(
        ("body", "complaint"),
        [
            ("profiles: [a, b]", "mapping under 'profiles:'"),
            ("profiles:\n  x: {vnc_port: 5900}", "image"),
            ("profiles:\n  x: {image: a, privileged: true}", "privileged"),
            ("profiles:\n  x: {image: a, devices: [kvm]}", "/dev/"),
            ("profiles:\n  x: {image: a, readiness: {kind: status_file}}", "status_file"),
        ],
    )
    def test_malformed_profiles_name_file_and_profile(self, body: str, complaint: str) -> None:
        with pytest.raises(ProfilesFileError, match="extra.yaml") as caught:
            parse_profiles(body, source="extra.yaml")
        assert complaint in str(caught.value)

    def test_profile_is_never_privileged(self) -> None:
        assert "privileged" not in DeviceProfile.model_fields


class TestBootAndHealth:
    def test_stub_slow_boots_45_s_and_waits_for_device_status_like_android(self) -> None:
        profiles = builtin_profiles()
        slow, android = profiles["stub-slow"], profiles["android"]
        assert slow.env["BOOT_S"] == "45"
        assert slow.readiness == android.readiness
        assert slow.readiness.probe_command() == android.readiness.probe_command()
        assert slow.boot_timeout_s > 45

    def test_healthcheck_starts_after_the_boot_timeout_and_keeps_the_image_check(self) -> None:
        slow = builtin_profiles()["stub-slow"]
        config = slow.healthcheck()
        assert config["start_period"] == int(slow.boot_timeout_s * 1e9)
        assert "test" not in config  # the image's own HEALTHCHECK (an RFB handshake)
        android = builtin_profiles()["android"].healthcheck()
        assert android["test"][0] == "CMD" and "sys.boot_completed" in android["test"][-1]


class TestParseHealth:
    @pytest.mark.parametrize(
        ("status", "health"),
        [
            ("Up 5 minutes (healthy)", "healthy"),
            ("Up 2 seconds (health: starting)", "starting"),
            ("Up 1 hour (unhealthy)", "unhealthy"),
            ("Up 3 seconds", None),
            ("Exited (1) 2 seconds ago", None),
        ],
    )
    def test_status_column_gives_health(self, status: str, health: str | None) -> None:
        from provisioner.runtime.model import parse_health

        assert parse_health(status) == health

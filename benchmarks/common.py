"""Shared by the benchmarks: the machine a run was made on (for the results files and reports)."""
import datetime
import os
import platform


def utc_date():
    """Now, as the results files write it: '2026-01-31 12:00 UTC'."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def cpu_model(default="unknown"):
    """The first 'model name' of /proc/cpuinfo."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return default


def mem_gib():
    """MemTotal in GiB, one decimal."""
    with open("/proc/meminfo") as f:
        return round(int(f.readline().split()[1]) / 1048576, 1)


def machine():
    """{date, nproc, cpu, mem_gib, kernel} of this machine."""
    return {"date": utc_date(), "nproc": os.cpu_count(), "cpu": cpu_model("?"), "mem_gib": mem_gib(),
            "kernel": platform.release()}

"""What a process takes from an executor's capacity: cpu, memory, GPUs and one Job slot."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resources:
    cpu_millis: int = 0
    memory_bytes: int = 0
    gpus: int = 0
    jobs: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu_millis + other.cpu_millis, self.memory_bytes + other.memory_bytes,
                         self.gpus + other.gpus, self.jobs + other.jobs)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu_millis - other.cpu_millis, self.memory_bytes - other.memory_bytes,
                         self.gpus - other.gpus, self.jobs - other.jobs)

    def fits_in(self, other: Resources) -> bool:
        return (self.cpu_millis <= other.cpu_millis and self.memory_bytes <= other.memory_bytes
                and self.gpus <= other.gpus and self.jobs <= other.jobs)

    def over(self, budget: Resources) -> list[str]:
        """Which dimensions exceed `budget`, as words for an error message."""
        out = []
        if self.cpu_millis > budget.cpu_millis:
            out.append(f"cpu {self.cpu_millis}m > capacity {budget.cpu_millis}m")
        if self.memory_bytes > budget.memory_bytes:
            out.append(f"memory {self.memory_bytes // 2**20}Mi > capacity {budget.memory_bytes // 2**20}Mi")
        if self.gpus > budget.gpus:
            out.append(f"gpu {self.gpus} > capacity {budget.gpus}")
        return out

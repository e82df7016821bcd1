"""Trainers: SFT, step-DPO and the value / PRM model, each with its config dataclass (`qstar.train.config`)."""

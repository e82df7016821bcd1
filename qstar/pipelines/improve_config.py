"""Configuration of `qstar improve` (torch-free, so the command line can describe it cheaply). Every field has its
help text, which `qstar improve --help` shows; `__post_init__` checks the values before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, fields

from qstar.checkpoints import resolve
from qstar.config import check, check_ranges, option
from qstar.records import LABEL_KINDS
from qstar.search import get_search
from qstar.tasks import TASKS
from qstar.train.config import DPOConfig, LoRAConfig, PolicyValueConfig, SFTConfig, ValueConfig


@dataclass
class ImproveConfig:
    """One `qstar improve` run: each iteration searches the train split with the current models, keeps the trees,
    extracts records, trains the policy (SFT, then step-DPO) and the value model, and evaluates on the task's
    evaluation split."""

    task: str = option("game24", "the task (its train split makes the data, its evaluation split measures)")
    task_args: dict = option({}, 'its options as JSON, e.g. {"shots": 0} (gsm8k); `qstar list` shows them')
    iterations: int = option(2, "search-train-evaluate rounds (a --resume may raise it to run on)")
    policy: str = option(
        "tiny-rules",
        "the starting policy: tiny-rules (rules only), tiny (shipped), a model folder or .gguf file, or the URL of "
        "an OpenAI-compatible server (then train_model names its weights)",
    )
    train_model: str = option(
        "", "with a server policy: the weights it serves (a folder or .gguf file), which the loop trains"
    )
    reload: str = option(
        "",
        "with a server policy: how the server gets each iteration's trained weights: vllm-lora, sglang, or a shell "
        "command holding {path}; '' searches later iterations with a local copy of the trained weights",
    )
    server_args: dict = option(
        {},
        "with a server policy: the openai backend's options as JSON, e.g. "
        '{"constraint": "llama.cpp", "timeout": 120} (constraint: how legal_steps asks the server; the key comes from '
        "$OPENAI_API_KEY)",
    )
    start_value: str = option(
        "", "value model before iteration 1: '' (Monte-Carlo rollouts), tiny-value, or a value-model folder"
    )
    problems: str = option("", "a problems file in the task's format to search for data instead of its train split")
    train_problems: int = option(250, "train problems searched per iteration (a fresh seeded sample; more: all)")
    extra_task: str = option("", "another task whose train split adds problems (e.g. countdown for game24)")
    extra_problems: int = option(0, "problems of extra_task searched per iteration (never an evaluation problem)")
    data_search: str = option("sample", "the search that makes training data (the verifier may guide it)")
    data_search_args: dict = option({}, 'its hyper-parameters as JSON, e.g. {"root_k": 32, "accept": 2}')
    data_budget: int = option(2000, "generated tokens per train problem")
    rollouts: int = option(
        2,
        "Monte-Carlo rollouts per scored step until a value model exists (0: none, the verifier scores complete steps"
        " and partial ones 0, so a search spends its tokens on its own expansions)",
    )
    hindsight: bool = option(False, "also learn from legal plays relabelled with the target they reached")
    legal_steps: bool = option(
        False,
        "the policy writes only the task's legal next steps in every search, data and evaluation (a task that lists "
        "them: countdown, game24; a server keeps to them through its constrained decoding, server_args' constraint)",
    )
    search_targets: bool = option(
        False,
        "also fine-tune the policy toward the search's choices: at every node where it compared steps, each step "
        "its labels rank best (AlphaZero's policy improvement; one-step SFT records beside the verified solutions)",
    )
    shared_trunk: bool = option(
        False,
        "one network for policy and value (AlphaZero's two heads on one trunk): each iteration's policy/ holds both "
        "heads, trained together on the SFT and value records with the policy_value settings; no value/ folder",
    )
    eval_search: str = option("best-of-n", "the search evaluated beside greedy")
    eval_search_args: dict = option({}, 'its hyper-parameters as JSON, e.g. {"root_k": 16}')
    eval_budget: int = option(2000, "generated tokens per evaluation problem")
    eval_limit: int | None = option(None, "evaluation problems used (default: the whole split)")
    sft_per_problem: int = option(0, "most distinct verified solutions per problem in the SFT records (0: all)")
    sft_replay: int = option(
        0,
        "iterations whose trees each iteration's SFT records come from: 0 all so far, 1 its own, 2 its own and the "
        "last (a shorter replay keeps later iterations' SFT as fast as the first's)",
    )
    batch_size: int = option(64, "problems searched at once (their model calls batched together)")
    value_labels: str = option(
        "mc",
        "step labels: mc (share of verified completions below; a step with none below, its score) or hard (any"
        " verified; a step with nothing explored below has none)",
    )
    shared_states: bool = option(
        False,
        "hard labels: also 1 for a step whose state (the task's state_key: countdown's numbers left and target) a"
        " verified solution of any tree so far passed through (a transposition table: most solvable steps are"
        " otherwise 0, none found below them in their own tree)",
    )
    max_value_records: int = option(2000, "most value records per iteration (a seeded sample of all paths so far)")
    step_dpo: bool = option(True, "step-DPO after SFT (the SFT-only policy is kept as policy-sft/)")
    preference_margin: float = option(0.3, "least value gap between the chosen and the rejected step of a pair")
    seed: int = option(0, "seed of the problem samples and of sampling")
    lora: bool = option(False, "train PEFT LoRA adapters on the policy instead of all its weights")
    lora_r: int = option(16, "rank of the LoRA adapters")
    lora_alpha: int = option(32, "scale of the LoRA adapters (lora_alpha)")
    lora_dropout: float = option(0.0, "dropout on the LoRA adapters' input")
    lora_targets: str = option("all-linear", "modules that get adapters: all-linear, or comma-separated names")
    merge: bool = option(False, "with lora: each iteration's policy/ is the merged model, its adapters in adapter/")
    launcher: str = option(
        "",
        "run each training stage as `LAUNCHER -m qstar train ...`, e.g. 'accelerate launch --num_processes 8' or "
        "'torchrun --nproc_per_node 2'; '' trains in this process",
    )
    sft: SFTConfig = option(SFTConfig(epochs=20.0, lr=1e-3), "the SFT trainer's settings")
    dpo: DPOConfig = option(DPOConfig(epochs=1.0, lr=1e-4, beta=0.1), "the step-DPO trainer's settings")
    value: ValueConfig = option(ValueConfig(epochs=2.0, lr=1e-3), "the value trainer's settings")
    policy_value: PolicyValueConfig = option(
        PolicyValueConfig(epochs=20.0, value_epochs=2.0, lr=1e-3),
        "the shared-trunk trainer's settings (with shared_trunk)",
    )

    def __post_init__(self) -> None:
        counts = ("iterations", "train_problems", "data_budget", "eval_budget", "batch_size", "eval_limit")
        check_ranges(
            self, (*counts, "max_value_records"), ("rollouts", "extra_problems", "sft_per_problem", "sft_replay")
        )
        check(self.value_labels in LABEL_KINDS, f"value_labels must be mc or hard, not {self.value_labels!r}")
        check(
            not self.shared_states or self.value_labels == "hard",
            "shared_states labels steps 1 where a state is proven solvable: it needs value_labels = hard",
        )
        TASKS.entry(self.task)  # unknown names and hyper-parameters fail here, before any work
        if self.extra_task:
            TASKS.entry(self.extra_task)
        get_search(self.data_search, **self.data_search_args)
        get_search(self.eval_search, **self.eval_search_args)
        start = resolve(self.start_value) if self.start_value else None
        check(start is None or start.is_dir(), f"start_value: no value model folder at {start}")
        check(self.lora or not self.merge, "merge applies to LoRA adapters: add lora")
        if self.lora:
            self.lora_settings.peft()  # a bad rank or target list fails here
        if self.served:
            check(bool(self.train_model), "a server's weights cannot be read: name them with train_model")
            check(resolve(self.train_model).exists(), f"train_model: nothing at {self.train_model}")
        else:
            check(not self.train_model, "train_model applies to a server policy (an http:// URL); train the policy")
            check(not self.reload, "reload applies to a server policy (an http:// URL)")
            check(not self.server_args, "server_args applies to a server policy (an http:// URL)")
        if self.served:
            check_server_args(self.policy, self.server_args)
        check(self.reload != "vllm-lora" or self.lora, "reload vllm-lora loads LoRA adapters: add lora")
        check(
            self.reload != "vllm-lora" or not self.merge,
            "reload vllm-lora serves adapters on the server's base: without merge (merged iterations' adapters sit "
            "on the previous iteration's weights)",
        )
        check(self.reload != "sglang" or self.merge or not self.lora, "reload sglang loads full weights: add merge")
        if self.shared_trunk:
            for name in ("step_dpo", "lora", "launcher", "served"):
                check(not getattr(self, name), f"shared_trunk trains one network in this process: drop {name}")

    @property
    def served(self) -> bool:
        """The policy is an OpenAI-compatible server."""
        return self.policy.startswith(("http://", "https://"))

    @property
    def lora_settings(self) -> LoRAConfig:
        return LoRAConfig(r=self.lora_r, alpha=self.lora_alpha, dropout=self.lora_dropout, targets=self.lora_targets)


def check_server_args(url: str, args: dict) -> None:
    """Server options the openai backend takes, other than those the loop sets itself; a bad value (an unknown
    `constraint`) fails here, before any work: the backend is built once without a request."""
    from qstar.policy.openai import OpenAIPolicy

    check(
        "api_key" not in args, "server_args: set the key in $OPENAI_API_KEY (the run's config.json keeps server_args)"
    )
    own = {"base_url", "model", "legal_steps", "api_key"}
    settable = {f.name for f in fields(OpenAIPolicy) if not f.name.startswith("_")} - own
    unknown = sorted(set(args) - settable)
    check(
        not unknown,
        f"server_args: no option {', '.join(map(repr, unknown))} (base_url, model and legal_steps come from policy, "
        f"reload and legal_steps; the others: {', '.join(sorted(settable))})",
    )
    OpenAIPolicy(base_url=url, **args).close()

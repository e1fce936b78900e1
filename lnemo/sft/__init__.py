"""Reasoning SFT: the chat template with the thinking toggle, paired data, schedules, the SFT loss and driver, evaluation."""

from lnemo.sft.data import (
    MODE_OFF,
    MODE_ON,
    MODE_UNKNOWN,
    paired_examples,
    problem_example,
    problem_examples,
    sft_pipeline,
    system_turn_ids,
    token_modes,
)
from lnemo.sft.evaluation import ModeReport, Sample, evaluate, format_ok, gsm8k_answer
from lnemo.sft.loss import sft_loss
from lnemo.sft.records import ChatRecord, parse_record, read_post_training, record_example, record_examples
from lnemo.sft.schedule import Stage, reasoning_then_mixed
from lnemo.sft.template import (
    THINKING_OFF,
    THINKING_ON,
    ChatFormat,
    Message,
    chat_messages,
    encode_chat,
    prompt_ids,
    reasoning_response,
    render,
    system_prompt,
)
from lnemo.sft.trainer import final_losses, train_sft

__all__ = [
    "MODE_OFF", "MODE_ON", "MODE_UNKNOWN", "THINKING_OFF", "THINKING_ON", "ChatFormat", "ChatRecord", "Message",
    "ModeReport", "Sample", "Stage", "chat_messages", "encode_chat", "evaluate", "final_losses", "format_ok",
    "gsm8k_answer", "paired_examples", "parse_record", "problem_example", "problem_examples", "prompt_ids",
    "read_post_training", "reasoning_response", "reasoning_then_mixed", "record_example", "record_examples",
    "render", "sft_loss", "sft_pipeline", "system_prompt", "system_turn_ids", "token_modes", "train_sft",
]

"""NomicBERT and Nomic Embed on the Hugging Face stack."""

from .configuration_nomic_bert import NomicBertConfig
from .modeling_nomic_bert import (
    NomicBertForMaskedLM,
    NomicBertForPreTraining,
    NomicBertForSequenceClassification,
    NomicBertForTokenClassification,
    NomicBertModel,
    NomicBertPreTrainedModel,
)

__version__ = "0.1.0"

__all__ = [
    "NomicBertConfig",
    "NomicBertForMaskedLM",
    "NomicBertForPreTraining",
    "NomicBertForSequenceClassification",
    "NomicBertForTokenClassification",
    "NomicBertModel",
    "NomicBertPreTrainedModel",
]

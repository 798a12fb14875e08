"""Derive packviz's compact prompt-length summary from the Azure LLM inference trace 2023.

Reads the conversation trace (CSV with a ``ContextTokens`` column), writes a quantile
table (1,001 quantiles, p0 .. p100 in steps of 0.1%) plus a few headline statistics to
``data/azure_conv_2023_lengths.json``. No row of the trace is copied: 19,366 lengths
become 1,001 order statistics, enough to resample the distribution (see
``packviz.lengths.azure_conv``).

    python scripts/derive_length_summary.py [../shared/data/azure-llm-inference-2023/AzureLLMInferenceTrace_conv.csv]
"""

import json
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent.parent
DEFAULT = HERE.parent / "shared/data/azure-llm-inference-2023/AzureLLMInferenceTrace_conv.csv"
OUT = HERE / "data/azure_conv_2023_lengths.json"

sys.path.insert(0, str(HERE))
from packviz.lengths import read_lengths  # noqa: E402


def main(path=DEFAULT) -> None:
    lengths = read_lengths(path)
    q = np.linspace(0, 100, 1001)
    summary = {
        "source": "Azure LLM inference trace 2023, conversation service (AzureLLMInferenceTrace_conv.csv), column ContextTokens",
        "license": "CC-BY-4.0",
        "attribution": (
            "Pratyush Patel, Esha Choukse, Chaojie Zhang, Aashaka Shah, Inigo Goiri, Saeed Maleki, "
            "Ricardo Bianchini. 'Splitwise: Efficient generative LLM inference using phase splitting', "
            "ISCA 2024. Data: github.com/Azure/AzurePublicDataset"
        ),
        "derived_by": "scripts/derive_length_summary.py",
        "count": int(len(lengths)),
        "total_tokens": int(lengths.sum()),
        "mean": round(float(lengths.mean()), 2),
        "min": int(lengths.min()),
        "max": int(lengths.max()),
        "quantile_percents": [round(float(p), 1) for p in q],
        "quantiles": [round(float(v), 2) for v in np.percentile(lengths, q)],
    }
    OUT.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(HERE)}: {summary['count']} lengths -> {len(q)} quantiles")


if __name__ == "__main__":
    main(*sys.argv[1:])

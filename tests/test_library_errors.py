"""The public library functions at their edges: a bad value is one ``ValueError`` (``IndexError``
for a row) line that names it; and numbers that used to go silently wrong are exact.

The table is the contract; the module-specific test files test the behaviour behind it.
"""

import numpy as np
import pytest

from packviz import flops, lengths as L, packing, plot, plot_serving, shapes, trace, widgets
from packviz.serving import metrics, timeline
from packviz.layout import PAD, Layout, block_causal_mask, positions_from_lengths
from packviz.serving import cost_model, simulate
from packviz.serving.costs import padded_prefill_work, varlen_prefill_work
from packviz.bench import config as bench_config, results as bench_results, scenarios as bench_scenarios
from packviz.layout import format_grid, format_mask, stack_layouts
from packviz.serving import costs as C
from packviz.serving.costs import CostModel
from packviz.steps import accumulation_weights, format_step_table, scale_lengths, spread, step_table, step_tokens

TINY_TRACE = trace.parse_trace("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                               "2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:50.99,396,109\n")
LAY = Layout.from_rows([[(0, 0, 3), (1, 3, 2)]], widths=[6])  # A A A B B _
EMPTY = Layout.from_rows([], widths=[])  # no rows, no sequences


def _config_file(tmp_path, text):
    f = tmp_path / "config.json"
    f.write_text(text)
    return f


# (call, exception, text the message must hold)
CASES = [
    # lengths: the generators
    (lambda: L.azure_conv(0), ValueError, "n (the number of lengths) must be a positive integer, got 0"),
    (lambda: L.azure_conv(20_000), ValueError, "n is 20000, more than the trace's 19,366 requests"),
    (lambda: L.azure_resample(2.5), ValueError, "got 2.5"),
    (lambda: L.azure_resample(8, seed=-1), ValueError, "seed must be an integer >= 0, got -1"),
    (lambda: L.seed_scenario(8, jitter=-1), ValueError, "jitter must be a number in [0, 1], got -1"),
    (lambda: L.seed_scenario(8, jitter=float("nan")), ValueError, "got nan"),
    (lambda: L.seed_scenario(8, short=-5), ValueError, "short must be a positive integer, got -5"),
    (lambda: L.seed_scenario(8, short=5000, long=4000), ValueError, "short (5000) must be at most long (4000)"),
    (lambda: L.seed_scenario(8, long=2**62), ValueError, f"long is {2**62}, above the largest allowed value"),
    (lambda: L.seed_scenario(8, long_fraction=1.5), ValueError, "long_fraction must be a number in [0, 1], got 1.5"),
    (lambda: L.lognormal(8, sigma=float("nan")), ValueError, "sigma must be a finite number >= 0, got nan"),
    (lambda: L.lognormal(8, sigma=-1), ValueError, "got -1"),
    (lambda: L.lognormal(8, median=1e300), ValueError, "lognormal(median=1e+300, sigma=1) drew a length of"),
    (lambda: L.lognormal(8, median=1e6, sigma=40), ValueError, "drew a length of"),
    (lambda: L.lognormal(8, median=0), ValueError, "median must be a finite number > 0, got 0"),
    (lambda: L.lognormal(8, max_len=0), ValueError, "max_len must be a positive integer, got 0"),
    (lambda: L.uniform(8, low=5, high=3), ValueError, "need low <= high, got low=5, high=3"),
    (lambda: L.uniform(8, low=0), ValueError, "low must be a positive integer, got 0"),
    # lengths: files
    (lambda: L.read_lengths("/no/such/file"), ValueError, "lengths file not found: /no/such/file"),
    (lambda: L.read_lengths("/"), ValueError, "/ is a directory, not a lengths file"),
    # packing
    (lambda: packing.pack([], 8), ValueError, "lengths is empty"),
    (lambda: packing.pack([3, 0], 8), ValueError, "lengths[1] is 0: lengths must be integers >= 1"),
    (lambda: packing.pack([3, 2.5], 8), ValueError, "lengths[1] is 2.5"),
    (lambda: packing.pack([3, float("nan")], 8), ValueError, "lengths[1] is nan"),
    (lambda: packing.pack([3, 2**63], 8), ValueError, "lengths[1] is 9223372036854775808: too large"),
    (lambda: packing.pack("35", 8), ValueError, "the string '35'"),
    (lambda: packing.pack([3], 0), ValueError, "pack_len must be a positive integer, got 0"),
    (lambda: packing.pack([3], 2**62), ValueError, f"pack_len is {2**62}, above the largest pack length 2,147,483,647"),
    (lambda: packing.pack([3], 8, "worst-fit"), ValueError, "strategy must be one of"),
    (lambda: packing.pack([3], 8, "pad"), ValueError, "strategy 'pad' needs a batch_size"),
    (lambda: packing.pack([3], 8, "bfd", batch_size=0), ValueError, "batch_size must be a positive integer, got 0"),
    (lambda: packing.pack([9], 4), ValueError, "sequence 0 has length 9, longer than the pack length 4"),
    (lambda: packing.pack([3], 8, overlong="drop"), ValueError, "overlong must be one of"),
    (lambda: packing.pack([2**40], 1, overlong="split"), ValueError, "into 1,099,511,627,776 chunks"),
    (lambda: packing.pad_and_pack([3], 8, 2, strategy="pad"), ValueError, "strategy must be one of 'next-fit'"),
    (lambda: packing.windows(0, 2), ValueError, "n must be a positive integer, got 0"),
    (lambda: packing.pack_in_windows([3], 8, 0), ValueError, "batch_size must be a positive integer, got 0"),
    (lambda: packing.lower_bound([3], -1), ValueError, "pack_len must be a positive integer, got -1"),
    (lambda: packing.apply_overlong([3, -1], 8), ValueError, "lengths[1] is -1"),
    (lambda: packing.strategy_table([3], 8, strategies=["worst-fit"]), ValueError, "got 'worst-fit'"),
    # layout
    (lambda: Layout.from_rows([[(PAD, 0, 2)]], widths=[4]), ValueError, "names sequence -1, but the layout's sequences "
                                                                       "are none (num_sequences=0); -1 is PAD"),
    (lambda: Layout.from_rows([[(5, 0, 2)]], widths=[4], num_sequences=2), ValueError,
     "names sequence 5, but the layout's sequences are 0 .. 1 (num_sequences=2)"),
    (lambda: Layout([0], [0], [2.5], [0], [4], 1), ValueError, "seg_length[0] is 2.5"),
    (lambda: Layout([0], [0], [2], [0], [4], -1), ValueError, "num_sequences must be an integer >= 0, got -1"),
    (lambda: Layout([0], [0], [2], [0], [4], 1, capacity=0), ValueError, "capacity must be a positive integer, got 0"),
    (lambda: Layout([0], [0], [2], [0], [4], 1, dropped_tokens=-3), ValueError, "dropped_tokens must be an integer >= 0"),
    (lambda: Layout([0], [2**62], [2**62], [0], [2**62], 1), ValueError, "does not fit row 0"),  # off + n wraps
    (lambda: Layout([0, 0], [0, 3], [3, 2], [0, 0], [4], 1), ValueError, "does not fit row 0 of width 4"),
    (lambda: LAY.cu_seqlens(7), IndexError, "row 7 out of range: the layout has 1 rows"),
    (lambda: LAY.slot_seq_grid(rows=[3]), IndexError, "row 3 out of range"),
    (lambda: positions_from_lengths([2, -1]), ValueError, "lengths[1] is -1"),
    (lambda: block_causal_mask([0, 1], slots=[0]), ValueError, "slots has 1 entries but seq_ids has 2"),
    (lambda: block_causal_mask([0, None]), ValueError, "seq_ids[1] is None"),
    (lambda: block_causal_mask([0.0, 1.0]), ValueError, "seq_ids[0] is 0.0"),
    # flops
    (lambda: flops.causal_pairs([-3]), ValueError, "lengths[0] is -3: lengths must be integers >= 0"),
    (lambda: flops.causal_pairs([1.5]), ValueError, "lengths[0] is 1.5"),
    (lambda: flops.square_pairs([-1]), ValueError, "widths[0] is -1"),
    (lambda: flops.tiled_causal_pairs([5], (0, 2)), ValueError, "tile must be a pair of positive integers"),
    (lambda: flops.block_sparse_pairs(LAY, block=0), ValueError, "block must be a positive integer, got 0"),
    (lambda: flops.block_sparse_pairs(LAY, rows=[4]), IndexError, "row 4 out of range"),
    (lambda: flops.layout_flops(LAY, "tiny", "varlen", rows=[0.0]), IndexError, "row 0.0 out of range"),
    (lambda: flops.layout_flops(LAY, "tiny", "varlen", rows=[2**64]), IndexError, f"row {2**64} out of range"),
    (lambda: LAY.slot_seq_grid(rows=[None]), IndexError, "row None out of range"),
    (lambda: Layout.from_rows([[(0, 0.5, 2)]], widths=[4]), ValueError, "rows[0] holds (0, 0.5, 2); a segment is"),
    (lambda: Layout.from_rows([[(2**63, 0, 2)]], widths=[4]), ValueError, f"rows[0] holds ({2**63}, 0, 2)"),
    (lambda: Layout.from_rows([None], widths=[4]), ValueError, "rows[0] must be a list of (seq, offset, length)"),
    (lambda: flops.useful_flops([3], "llama-5"), ValueError, "unknown model 'llama-5'"),
    (lambda: flops.useful_flops([3], "tiny", lm_head="first"), ValueError, "lm_head must be one of 'all', 'last'"),
    (lambda: flops.layout_flops(LAY, "tiny", "sparse"), ValueError, "execution must be one of"),
    (lambda: flops.layout_flops(LAY, "tiny", "masked", tile=(2, 2)), ValueError, "tile applies to the causal kernels"),
    (lambda: flops.compare(packing.pack([3, 5], 8, "pad", batch_size=2), packing.pack([5, 3], 8, "bfd"), "tiny"),
     ValueError, "different tokens: sequence 0 has 3 in the padded layout, 5 in the packed one"),
    (lambda: flops.compare(packing.pack([3, 9], 8, "pad", batch_size=2, overlong="truncate"),
                           packing.pack([3, 9], 8, "bfd", overlong="split"), "tiny"),
     ValueError, "sequence 1 has 8 in the padded layout, 9 in the packed one"),
    # shapes
    (lambda: shapes.get_shape("llama-5"), ValueError, "unknown model 'llama-5'; choose one of llama-3-8b"),
    (lambda: shapes.get_shape(42), ValueError, "expected a model name, a ModelShape or a LlamaConfig, got int"),
    (lambda: shapes.ModelShape("x", 0, 8, 1, 1, 1, 8), ValueError, "ModelShape.hidden must be a positive integer, got 0"),
    (lambda: shapes.ModelShape("x", 8, 8, 1, 3, 2, 8), ValueError, "heads (3) must be a multiple of kv_heads (2)"),
    (lambda: shapes.shape_from_config_file("/no/such/config.json"), ValueError, "no such config file"),
    # trace
    (lambda: trace.parse_trace(""), ValueError, "trace: empty file"),
    (lambda: trace.parse_trace("TIMESTAMP,ContextTokens,GeneratedTokens\n"), ValueError, "a header but no requests"),
    (lambda: trace.parse_trace("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,x,1\n"), ValueError,
     "line 2: ContextTokens is 'x', not an integer"),
    (lambda: trace.parse_trace("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,3,1\n"
                               "2023-11-16 18:15:45,3,1\n"), ValueError, "line 3: TIMESTAMP 2023-11-16 18:15:45 is earlier"),
    (lambda: trace.read_trace("/no/such/trace.csv"), ValueError, "trace file not found: /no/such/trace.csv"),
    (lambda: TINY_TRACE.window(0), ValueError, "must be a positive integer, got 0"),
    (lambda: TINY_TRACE.scaled(0), ValueError, "rate_scale must be a finite number > 0, got 0"),
    (lambda: TINY_TRACE.resample(-2), ValueError, "got -2"),
    (lambda: TINY_TRACE.resample(2, seed=-1), ValueError, "seed must be an integer >= 0, got -1"),
    (lambda: TINY_TRACE.window(1, start="0"), ValueError, "start '0' does not leave room"),
    (lambda: L.azure_resample(2**40), ValueError, "above the largest allowed value 1,000,000,000"),
    # serving
    (lambda: simulate(TINY_TRACE, "fifo"), ValueError, "policy must be one of"),
    (lambda: simulate(TINY_TRACE, "static", max_batch=0), ValueError, "max_batch must be a positive integer, got 0"),
    (lambda: simulate(TINY_TRACE, "static", rate_scale=float("nan")), ValueError, "rate_scale must be a finite number"),
    (lambda: simulate(TINY_TRACE, "static", arrivals="never"), ValueError, "arrivals must be one of 'trace', 'offline'"),
    (lambda: simulate(TINY_TRACE, "static", gpu="tpu-v5"), ValueError, "unknown GPU 'tpu-v5'"),
    (lambda: simulate(TINY_TRACE, "continuous", page_size=2**63), ValueError, "page_size is 9223372036854775808, above"),
    (lambda: cost_model("tpu-v5"), ValueError, "unknown GPU 'tpu-v5'"),
    (lambda: padded_prefill_work([3, 0]), ValueError, "prompts[1] is 0: prompts must be integers >= 1"),
    (lambda: varlen_prefill_work([3, None]), ValueError, "prompts[1] is None"),
    (lambda: spread({"a": 1}), ValueError, "spread needs a 1-D array of numbers, got {'a': 1}"),
    (lambda: packing.pack(np.ma.array([3, 4]).reshape(1, 2), 8), ValueError, "lengths must be one-dimensional"),
    (lambda: packing.pack([3], np.array([[8]])), ValueError, "pack_len must be a positive integer, got array([[8]])"),
    # plot
    (lambda: plot.to_png(plot.mask(LAY), dpi=0), ValueError, "dpi must be a positive integer, got 0"),
    (lambda: plot.to_png(plot.mask(LAY), dpi=1), ValueError, "dpi is 1, below 10"),
    (lambda: plot.to_png(plot.mask(LAY), dpi=100_000), ValueError, "dpi is 100000: a 5.5 x 5.5-inch figure would be"),
    (lambda: plot.mask(LAY, row=4), IndexError, "row 4 out of range"),
    # widgets: the initial values a control cannot show, with the values it can
    (lambda: widgets.BatchExplorer(pack_len=3000), ValueError,
     "pack_len (the pack-length slider) must be one of 512, 1024, 2048, 4096, 8192, 16384; got 3000"),
    (lambda: widgets.BatchExplorer(n=600), ValueError, "n (the sequences slider) must be an integer from 1 to 512, got 600"),
    (lambda: widgets.BatchExplorer(batch_size=0), ValueError, "must be an integer from 1 to 64, got 0"),
    (lambda: widgets.BatchExplorer(model="llama-5"), ValueError, "model must be one of"),
    (lambda: widgets.MaskExplorer(n=4, row=99), ValueError, "row must be an integer from 0 to 0 (the layout has 1 rows), got 99"),
    (lambda: widgets.MaskExplorer(row=-1), ValueError, "row must be an integer >= 0, got -1"),
    (lambda: widgets.make_lengths("zipf", 4), ValueError, "length source must be one of"),
    # issue 22: the library's wrong types and values
    (lambda: flops.compare(EMPTY, EMPTY, "tiny"), ValueError, "the layouts hold no tokens: compare needs at least one"),
    (lambda: flops.layout_flops(None, "tiny", "varlen"), TypeError, "layout must be a packviz Layout"),
    (lambda: flops.layout_flops([3, 5], "tiny", "varlen"), TypeError, "layout must be a packviz Layout (packviz.packing"),
    (lambda: flops.Flops(1, 2) + 1, TypeError, "must be a Flops (useful_flops or layout_flops gives one); got int 1"),
    (lambda: flops.Flops(1, 2) - None, TypeError, "got NoneType None"),
    (lambda: flops.Flops(1, 2) * "a", TypeError, "Flops * k needs an integer k (FLOPs are exact counts), got 'a'"),
    (lambda: 0.5 * flops.Flops(1, 2), TypeError, "got 0.5; scale .total for a fraction"),
    (lambda: flops.Flops(1.5, 2), ValueError, "Flops.linear must be an integer (FLOPs are exact counts), got 1.5"),
    (lambda: flops.ideal_speedup(flops.Flops(1, 1), None), TypeError, "other must be a Flops"),
    (lambda: flops.waste_fraction("x", flops.Flops(1, 1)), TypeError, "spent must be a Flops"),
    (lambda: flops.sequence_lengths(None), TypeError, "layout must be a packviz Layout"),
    (lambda: flops.same_sequences(LAY, LAY, names=None), TypeError, "names must be a pair of names; got NoneType"),
    (lambda: flops.same_sequences(LAY, LAY, names=["a"]), ValueError, "names must be a pair of names, e.g."),
    (lambda: flops.compare_as_dict([1]), TypeError, "result must be the dict compare() returns"),
    (lambda: Layout.from_rows([[(0, 0, 5)]], widths=[8], capacity=4), ValueError,
     "row 0 is 8 slots wide, more than the layout's capacity 4"),
    (lambda: Layout.from_rows([[(0, 0, 2), (1, 2, 2)]], widths=[4], kind="padded"), ValueError,
     "row 0 of a padded layout holds 2 segments; a padded row holds one sequence: give kind='packed'"),
    (lambda: stack_layouts([LAY, "x"], [0, 2], num_sequences=4), TypeError, "parts[1] must be a packviz Layout"),
    (lambda: stack_layouts([], [], num_sequences=0), ValueError, "stack_layouts needs one or more layouts"),
    (lambda: stack_layouts([LAY], [0.5], num_sequences=2), ValueError, "seq_offsets[0] is 0.5"),
    (lambda: format_mask(None), ValueError, "mask must be a square (T, T) array of bools, got None"),
    (lambda: format_grid([1, 2]), TypeError, "layout must be a packviz Layout"),
    (lambda: packing.forwards("bfd"), TypeError, "layout must be a packviz Layout"),
    (lambda: packing.fill_waits(LAY, "abc"), ValueError, "arrival_s must be seconds (numbers), got 'abc'"),
    (lambda: packing.fill_waits(LAY, [0.0, float("nan")]), ValueError, "arrival_s must be finite seconds"),
    (lambda: packing.windows(2**70, 2), ValueError, "make more than 100,000,000 windows; choose a larger batch_size"),
    (lambda: packing.strategy_table([3], 8, strategies=None), TypeError, "strategies must be a list of strategy names"),
    (lambda: packing.format_strategy_table(None), TypeError, "rows must be strategy_table()'s list; got NoneType"),
    (lambda: packing.format_strategy_table([{"strategy": "bfd"}]), ValueError, "rows[0] has no 'rows'"),
    (lambda: packing.format_strategy_table([], seconds=None), ValueError, "seconds must be True or False, got None"),
    # steps
    (lambda: step_tokens(None), TypeError, "layout must be a packviz Layout"),
    (lambda: step_tokens([3, 5]), TypeError, "layout must be a packviz Layout (packviz.packing.pack"),
    (lambda: step_tokens(LAY, rows_per_step=True), ValueError, "rows_per_step must be a positive integer, got True"),
    (lambda: step_table([LAY]), TypeError, "layouts must be a dict {label: Layout}; got list"),
    (lambda: step_table({"a": LAY}, rows_per_step=3), TypeError, "rows_per_step must be a dict {label: rows}; got int 3"),
    (lambda: step_table({"a": 3}), TypeError, "layouts['a'] must be a packviz Layout"),
    (lambda: step_table({"a": EMPTY}), ValueError, "layouts['a'] holds no tokens"),
    (lambda: format_step_table(None), TypeError, "rows must be step_table()'s list"),
    (lambda: accumulation_weights([3, 0]), ValueError, "targets_per_micro_batch[1] is 0"),
    (lambda: scale_lengths([5], 2, minimum=2**70), ValueError, "minimum is 1180591620717411303424, above the largest"),
    # trace: float and beyond-int64 token counts
    (lambda: trace.Trace([0.0, 1.0], [1.5, 2.0], [1, 1]), ValueError, "prompt_tokens[0] is 1.5: prompt_tokens must be integers"),
    (lambda: trace.Trace([0.0], np.array([2**63], dtype=np.uint64), [1]), ValueError,
     "prompt_tokens[0] is 9223372036854775808: too large"),
    (lambda: trace.Trace([0.0], [3], [True]), ValueError, "generated_tokens[0] is True"),
    # serving/costs
    (lambda: CostModel("x", 1e12, 1e12, -0.5, 1e12, 1e9), ValueError, "CostModel.overhead_s must be a finite number >= 0, got -0.5"),
    (lambda: CostModel("x", float("nan"), 1e12, 0.1, 1e12, 1e9), ValueError, "CostModel.flop_rate must be a finite number"),
    (lambda: CostModel("x", 1e12, 1e12, 0.1, 1e12, 1e9, decode_overhead_s=-1), ValueError, "decode_overhead_s must be"),
    (lambda: CostModel("x", 0, 0, 0, 0, 0).seconds(1.0, 1.0), ValueError, "cost model 'x' has no flop_rate or byte_rate"),
    (lambda: C.chunk_pairs(None, 3), ValueError, "done must be an integer >= 0, got None"),
    (lambda: C.chunk_pairs(2, 1.5), ValueError, "chunk must be an integer >= 0, got 1.5"),
    (lambda: C.plan_work(None), TypeError, "plan must be a StepPlan (packviz.serving.scheduler), got NoneType"),
    (lambda: C.plan_waste([1]), TypeError, "plan must be a StepPlan"),
    (lambda: C.plan_live_kv("p"), TypeError, "plan must be a StepPlan"),
    (lambda: C.span_sums(None, 3), TypeError, "line must be a Line (Pricer.decode_line gives one)"),
    (lambda: C.span_sums(C.Line(1.0, 0.0, 1.0, 0.0, 0.0), None), ValueError, "k must be an integer (a number of steps)"),
    (lambda: C.steps_to_reach(C.Line(1.0, 0.0, 1.0, 0.0, 0.0), None, 4), ValueError, "seconds must be a finite number"),
    (lambda: C.describe("h100"), TypeError, "cost must be a CostModel"),
    (lambda: C.Pricer("tiny", "h100"), TypeError, "cost must be a CostModel"),
    (lambda: C.arithmetic_intensity(None, "tiny"), TypeError, "work must be a Work"),
    (lambda: C.arithmetic_intensity(C.decode_work(1, 1), "tiny", bytes_per_param=None), ValueError, "bytes_per_param must be"),
    (lambda: C.streamed_weight_bytes("tiny", 0), ValueError, "bytes_per_param must be a positive integer, got 0"),
    (lambda: C.matmul_rate(None), ValueError, "unknown GPU None; choose one of h100"),
    (lambda: C.ridge_point(["h100"]), ValueError, "unknown GPU ['h100']"),
    (lambda: C.ridge_point("h100", measured="yes"), ValueError, "measured must be True or False, got 'yes'"),
    (lambda: C.preset_cost_model(["h100"]), ValueError, "unknown GPU ['h100']"),
    # bench (no torch)
    (lambda: bench_config.validate(None), TypeError, "cfg must be a BenchConfig"),
    (lambda: bench_results.summary(None), TypeError, "res must be a benchmark results dict"),
    (lambda: bench_results.format_results([1]), TypeError, "res must be a benchmark results dict"),
    (lambda: bench_results.not_timed("abc"), TypeError, "res must be a benchmark results dict (load_results gives one); got str"),
    (lambda: bench_results.find_results(None), TypeError, "directory must be a directory path; got NoneType"),
    (lambda: bench_results.load_results(3), TypeError, "path must be a results file or directory path; got int"),
    (lambda: bench_scenarios.window_layouts(None, 2, 8), ValueError, "lengths must be one-dimensional"),
    (lambda: bench_scenarios.plan("smoke"), TypeError, "cfg must be a BenchConfig"),
    (lambda: bench_scenarios.recorded_windows(None), TypeError, "res must be a benchmark results dict"),
    # issue 23: serving's results, tables and pictures given the wrong thing
    (lambda: metrics.latencies("x"), TypeError, "r must be a SimResult (what simulate() or run_engine() returns); got str"),
    (lambda: metrics.itl_percentiles("x"), TypeError, "ledger must be a Ledger (a run's .ledger"),
    (lambda: metrics.format_summary({}), ValueError, "s has no 'policy': it must be a summary() dict"),
    (lambda: metrics.format_summary(None), TypeError, "s must be a summary() dict (summary(simulate(...))); got NoneType"),
    (lambda: metrics.format_table([{}]), ValueError, "summaries[0] has no 'policy': it must be a summary() dict"),
    (lambda: metrics.format_table("x"), TypeError, "summaries must be a list of summary() dicts"),
    (lambda: timeline.step_table("x"), TypeError, "plans must be a list of StepPlan (a run's .plans"),
    (lambda: timeline.step_table([None]), TypeError, "plans[0] must be a StepPlan (one step of a run's .plans); got NoneType"),
    (lambda: timeline.num_requests("x"), TypeError, "plans must be a list of StepPlan"),
    (lambda: timeline.pages_held(3, 16), TypeError, "plans must be a list of StepPlan"),
    (lambda: timeline.format_step_table("x"), TypeError, "table must be a StepTable (what step_table(plans) returns)"),
    (lambda: plot_serving.slot_timeline(None), TypeError, "result must be a SimResult"),
    (lambda: plot_serving.kv_bars([{}]), ValueError, "summaries[0] has no 'policy': it must be a summary() dict"),
    (lambda: plot_serving.kv_bars(None), TypeError, "summaries must be a list of summary() dicts"),
    (lambda: plot_serving.utilisation_bars([{}]), ValueError, "summaries[0] has no 'policy'"),
    (lambda: plot_serving.time_split_bars([{}]), ValueError, "summaries[0] has no 'policy'"),
    (lambda: plot_serving.time_split_bars([{"policy": "x", "makespan_s": 1.0}]), ValueError,
     "summaries[0] has no 'time_split_s'"),
    (lambda: trace.Trace("abc", [1], [1]), ValueError, "arrival_s must be seconds (numbers), got 'abc'"),
    (lambda: trace.Trace([0.0, float("inf")], [1, 1], [1, 1]), ValueError, "arrival_s must be finite seconds"),
    (lambda: trace.read_trace(None), TypeError, "path must be a trace file path (a str or pathlib.Path), or '-' for "
                                                "standard input; got NoneType"),
    (lambda: L.read_lengths(3), TypeError, "path must be a lengths file path"),
    (lambda: trace.parse_trace(None), TypeError, "text must be the CSV text (a str; read_trace(path) reads a file); got "
                                                 "NoneType"),
    (lambda: trace.parse_trace(b"TIMESTAMP"), TypeError, "text must be the CSV text"),
    (lambda: trace.parse_trace("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1_000,1\n"), ValueError,
     "ContextTokens is '1_000', not an integer (ASCII digits"),
]


@pytest.mark.parametrize("call, error, shown", CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_bad_value_is_one_line_naming_it(call, error, shown):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    assert shown in message


def _torch_cases():
    """(call, exception, text) rows of the torch side, built only when torch imports."""
    M = pytest.importorskip("packviz.model")
    from packviz import flopcount, training as T
    from packviz.bench import measure, runner

    batch = M.packed_batch([[1, 2, 3], [4, 5]])
    logits = torch.zeros(5, 4)
    return [
        (lambda: M.packed_batch([[1.5]]), ValueError, "sequences[0][0] is 1.5: sequences[0] must be integers >= 0"),
        (lambda: M.packed_batch([[1, -2]]), ValueError, "sequences[0][1] is -2"),
        (lambda: M.packed_batch(torch.tensor([[0.5]])), ValueError, "sequences[0] must be a 1-D tensor of integer token ids"),
        (lambda: M.packed_batch(None), TypeError, "sequences must be a list of token-id lists; got NoneType"),
        (lambda: M.packed_batch("abc"), TypeError, "sequences must be a list of token-id lists; got str"),
        (lambda: M.packed_batch([]), ValueError, "sequences is empty"),
        (lambda: M.packed_batch([[1]], pad_to=2**70), ValueError, "pad_to is 1180591620717411303424, above the largest"),
        (lambda: M.packed_batch([[1]], device="gpu9"), ValueError, "unknown device 'gpu9'; use e.g. cpu, cuda, cuda:0"),
        (lambda: M.padded_batch([[1]], pad_id=2**64), ValueError, "pad_id is 18446744073709551616, beyond int64 token ids"),
        (lambda: M.default_dtype(None), ValueError, "unknown device None"),
        (lambda: M.packed_forward("model", batch), TypeError, "model must be a LlamaForCausalLM (packviz.model.build_model"),
        (lambda: M.packed_forward(None, {"ids": 1}), ValueError, "batch has no 'input_ids'"),
        (lambda: M.padded_forward(None, None), TypeError, "model must be a LlamaForCausalLM"),
        (lambda: M.rows_forward(torch.nn.Linear(1, 1), batch), TypeError, "model must be a LlamaForCausalLM"),
        (lambda: M.per_sequence_logits(None, [[1]]), TypeError, "model must be a LlamaForCausalLM"),
        (lambda: M.last_token_index([0, 3]), TypeError, "batch must be a batch of packviz.model.packed_batch; got list"),
        (lambda: M.block_causal_mask({"input_ids": batch["input_ids"]}), ValueError, "batch has no 'cu_seq_lens_q'"),
        (lambda: M.max_abs_diff([1.0], logits), TypeError, "a must be a torch.Tensor; got list"),
        (lambda: M.max_abs_diff(logits, torch.zeros(2, 2)), ValueError, "a and b must have one shape, got (5, 4) and (2, 2)"),
        (lambda: M.top1_agreement(None, logits), TypeError, "logits must be a torch.Tensor"),
        (lambda: M.top1_margin(np.zeros((2, 2))), TypeError, "logits must be a torch.Tensor; got ndarray"),
        (lambda: M.kl_divergence(logits, "x"), TypeError, "logits must be a torch.Tensor; got str"),
        (lambda: M.per_sequence(M.max_abs_diff, logits, logits, [0, 2.5]), ValueError, "cu_seqlens[1] is 2.5"),
        (lambda: M.diff_text(None), ValueError, "d must be a finite number, got None"),
        (lambda: M.kl_text("0.1"), ValueError, "kl must be a finite number, got '0.1'"),
        (lambda: M.replaced([[1, 2]], True, vocab=8), ValueError, "victim=True is not a sequence index"),
        (lambda: M.comparison_table([1], ["A"]), TypeError, "rows must be a dict {label: [LogitsComparison, ...]}"),
        (lambda: M.trap_inputs(None, batch, "kv_cache_on"), TypeError, "model must be a LlamaForCausalLM"),
        (lambda: M.batch_from_layout(None, 0, [[1, 2, 3]]), TypeError, "layout must be a packviz Layout"),
        (lambda: M.batch_from_layout(LAY, 0, None), ValueError, "token_ids has no sequence 0"),
        (lambda: T.perturbed([[1, 2], [3]], keep=99, vocab=8), ValueError,
         "keep (the sequence left unchanged) must be an integer from 0 to 1, got 99"),
        (lambda: T.perturbed([[1, 2], [3]], keep=0, vocab=0), ValueError, "vocab must be a positive integer, got 0"),
        (lambda: T.perturbed([[1, 2], [3]], keep=0, vocab=1), ValueError, "vocab=1: need at least 2 token ids"),
        (lambda: T.perturbed([[1, 2], [3]], keep=True, vocab=8), ValueError, "got True"),
        (lambda: T.random_sequences([3], vocab=8, seed=2**70), ValueError, "seed must be an integer from 0 to"),
        (lambda: T.packs_of([3, 5], [[1]]), TypeError, "layout must be a packviz Layout"),
        (lambda: T.packs_of(LAY, [[1, 2, 3]]), ValueError, "sequences has 1 entries, the layout 2 sequences"),
        (lambda: T.shifted_targets([[1, 2]]), TypeError, "labels must be a torch.Tensor; got list"),
        (lambda: T.count_targets(None), TypeError, "labels must be a torch.Tensor; got NoneType"),
        (lambda: T.unmasked_labels([1]), TypeError, "batch must be a batch of packviz.model.packed_batch"),
        (lambda: T.only_sequence_labels({"labels": batch["labels"]}, 0), ValueError, "batch has no 'cu_seq_lens_q'"),
        (lambda: T.model_inputs({"input_ids": batch["input_ids"]}), ValueError, "batch has no 'labels'"),
        (lambda: T.train_step(None, batch), TypeError, "model must be a LlamaForCausalLM"),
        (lambda: T.target_sequence_ids(None), TypeError, "batch must be a batch of packviz.model.packed_batch"),
        (lambda: T.sequence_mean_step("m", batch), TypeError, "model must be a LlamaForCausalLM"),
        (lambda: T.grad_rel_diffs({}, {"w": torch.zeros(1)}), ValueError, "grads has no 'w', which ref holds"),
        (lambda: T.grad_rel_diffs(None, {}), TypeError, "grads must be a dict {parameter: gradient}; got NoneType"),
        (lambda: T.compare_steps(None, None), TypeError, "step must be a Step (train_step gives one)"),
        (lambda: T.prove_one_pack(None, [[1, 2]]), TypeError, "model must be a LlamaForCausalLM"),
        (lambda: T.isolation_failure(None, [[1, 2]], 0), TypeError, "model must be a LlamaForCausalLM"),
        (lambda: T.format_comparisons(None), TypeError, "rows must be a list of dicts; got NoneType"),
        (lambda: T.format_comparisons([{"name": "x"}]), ValueError, "rows[0] has no 'loss_rel_diff'"),
        (lambda: T.packed_rows_batch(None), TypeError, "packs must be a list of packs"),
        (lambda: flopcount.check(None, LAY), TypeError, "model must be a LlamaForCausalLM"),
        (lambda: measure.stats("abc"), ValueError, "times must be seconds (numbers), got 'abc'"),
        (lambda: measure.stats([1.0, float("inf")]), ValueError, "times must be finite seconds"),
        (lambda: measure.device_info("gpu9"), ValueError, "unknown device 'gpu9'"),
        (lambda: runner.sdpa_backends(["FAST"]), ValueError, "SDPA backend must be one of 'MATH'"),
        (lambda: runner.run("smoke"), TypeError, "cfg must be a BenchConfig"),
    ]


def test_torch_side_bad_values_are_one_line_naming_them():
    global torch
    torch = pytest.importorskip("torch")
    for call, error, shown in _torch_cases():
        with pytest.raises(error) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and shown in message, (shown, message)


def test_edge_values_give_correct_results():
    assert flops.varlen_grid([3], max_seqlen=2**70) == {"m_blocks": -(-2**70 // 128), "launched": -(-2**70 // 128),
                                                       "working": 1, "uncovered_tokens": 0}
    assert flops.varlen_grid([3, 300], block_m=2**70) == {"m_blocks": 1, "launched": 2, "working": 2,
                                                         "uncovered_tokens": 0}
    assert flops.block_sparse_pairs(EMPTY) == 0
    assert sum([flops.Flops(1, 2), flops.Flops(3, 4)], flops.Flops(0, 0)) == flops.Flops(4, 6)
    assert 2 * flops.Flops(1, 2) == flops.Flops(2, 4) and flops.Flops(np.int64(3), 1).linear == 3
    # a step holding no token: its lr swing is infinite, never a ZeroDivisionError
    gap = Layout.from_rows([[(0, 0, 3)], [], []], widths=[3, 3, 3], kind="padded")
    assert step_table({"gap": gap}, {"gap": 1})[0]["per_token_lr_swing"] == float("inf")
    assert step_tokens(gap, rows_per_step=2**70)["tokens"].tolist() == [3]  # more rows than the layout: one step
    assert C.chunk_pairs(np.int64(2), 3) == 12 and CostModel("engine", 0, 0, 0, 0, 0).flop_rate == 0.0


@pytest.mark.parametrize("text, shown", [
    ('{"hidden_size": 64, "intermediate_size": 224, "num_hidden_layers": 2, "num_attention_heads": 0, '
     '"vocab_size": 256}', "config.json: num_attention_heads is 0; it must be a positive integer"),
    ("[1, 2]", "config.json: the JSON is a list, not an object of config keys"),
    ('{"hidden_size": 64,', "config.json: not valid JSON (line 1, column 20"),
    ('{"model_type": "mistral"}', "config.json: model_type is 'mistral'"),
])
def test_configs_are_validated_once_naming_the_file_and_the_key(tmp_path, text, shown):
    with pytest.raises(ValueError) as info:
        shapes.shape_from_config_file(_config_file(tmp_path, text))
    assert shown in str(info.value) and str(tmp_path) in str(info.value)


def test_batch_from_layout_refuses_fewer_tokens_than_the_layout_holds():
    torch_model = pytest.importorskip("packviz.model")
    with pytest.raises(ValueError, match=r"token_ids\[0\] has 2 tokens, but the layout places 3 of sequence 0"):
        torch_model.batch_from_layout(LAY, 0, [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="token_ids has no sequence 1"):
        torch_model.batch_from_layout(LAY, 0, [[1, 2, 3]])
    batch = torch_model.batch_from_layout(LAY, 0, [[1, 2, 3, 9], [4, 5]])  # longer is fine: the first tokens
    assert batch["input_ids"].flatten().tolist() == [1, 2, 3, 4, 5]


def test_a_failed_save_keeps_the_figure_already_there(tmp_path, monkeypatch):
    f = tmp_path / "mask.png"
    plot.save(plot.mask(LAY), f, dpi=20)
    good = f.read_bytes()
    with pytest.raises(ValueError, match="dpi is 100000"):
        plot.save(plot.mask(LAY), f, dpi=100_000)
    ax = plot.mask(LAY)
    monkeypatch.setattr(ax.figure, "savefig", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("render failed")))
    with pytest.raises(RuntimeError):
        plot.save(ax, f, dpi=20)
    assert f.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["mask.png"]


# ---------------------------------------------------------------------- exact at any size
def test_flop_totals_are_exact_past_int64():
    n = 2**62
    assert flops.causal_pairs([n, n]) == n * (n + 1)
    assert flops.square_pairs([n]) == n * n
    shape = shapes.get_shape("tiny")
    useful = flops.useful_flops([n, n], shape)
    assert useful.linear == 2 * n * (shape.linear_flops_per_token + shape.lm_head_flops_per_token) > 0
    assert useful.attention == n * (n + 1) * shape.attention_flops_per_pair
    assert flops.tiled_causal_pairs([2**40], (128, 128)) == (2**33 * (2**33 + 1) // 2) * 128 * 128


def test_a_layout_of_huge_rows_counts_exactly():
    w = 2**62
    lay = Layout.from_rows([[(0, 0, w)], [(1, 0, w)]], widths=[w, w])
    assert lay.real_tokens == lay.slots == 2**63
    assert lay.row_real_tokens().tolist() == [w, w]
    assert flops.sequence_lengths(lay).tolist() == [w, w]
    q = 2**40 // 2**20  # one 2**40-slot sequence in blocks of 2**20: a triangle of 2**20 query blocks
    big = Layout.from_rows([[(0, 0, 2**40)]], widths=[2**40])
    assert flops.block_sparse_pairs(big, block=2**20) == q * (q + 1) // 2 * 2**40


def test_tiled_pairs_match_their_definition():
    rng = np.random.default_rng(0)
    for n, bq, bk in zip(rng.integers(0, 3000, 200), rng.integers(1, 300, 200), rng.integers(1, 300, 200)):
        n, bq, bk = int(n), int(bq), int(bk)
        tiles = sum((min((i + 1) * bq, n) - 1) // bk + 1 for i in range(-(-n // bq)))
        assert flops.tiled_causal_pairs([n], (bq, bk)) == tiles * bq * bk, (n, bq, bk)


def test_generators_keep_their_promises():
    x = L.lognormal(1000, median=1e12, sigma=8.0, max_len=10**15)  # clipped before it could leave int64
    assert 1 <= x.min() and x.max() == 10**15
    x = L.seed_scenario(64, short=2**53, long=2**53, jitter=0.0)
    assert x.tolist() == [2**53] * 64


def test_best_fit_memory_does_not_grow_with_the_pack_length():
    lay = packing.pack([3, 4, 2**31 - 8], packing.MAX_PACK_LEN, "bfd")  # a dense array of C rooms would be 2 GB
    assert lay.num_rows == 1 and lay.real_tokens == 2**31 - 1


def test_lengths_are_read_exactly(tmp_path):
    f = tmp_path / "l.txt"
    f.write_text(f"{2**63 - 1}\n3\n")
    assert L.read_lengths(f).tolist() == [2**63 - 1, 3]
    f.write_text(f"3\n{2**63}\n")
    with pytest.raises(ValueError, match=f"line 2: {2**63} is too large"):
        L.read_lengths(f)


def test_utilisation_bars_label_what_a_replay_did_not_measure():
    """A replay against a real server has no GPU counters: busy and MFU are None, drawn as "not measured"."""
    s = metrics.summary(simulate(TINY_TRACE, "static", model="tiny"))
    replayed = {**s, "policy": "replayed", "gpu_busy_fraction": None, "useful_flop_fraction": None, "mfu": None}
    ax = plot_serving.utilisation_bars([s, replayed])
    texts = [t.get_text() for t in ax.texts]
    assert texts.count(plot_serving.NOT_MEASURED) == 2 and len(texts) == 3      # two labels, one share (the known run)
    heights = [p.get_height() for p in ax.patches]
    assert heights[1] == heights[3] == 0.0 and heights[0] == pytest.approx(s["gpu_busy_fraction"])

"""lazaret.runners.introspection: Beam's view_as / get_dofn_specs memoised only inside cached(), same answers."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, TypeOptions
from apache_beam.transforms import userstate

from lazaret.runners.introspection import cached


class _Stateful(beam.DoFn):
    COUNT = userstate.ReadModifyWriteStateSpec("count", beam.coders.VarIntCoder())

    def process(self, element, count=beam.DoFn.StateParam(COUNT)):
        yield element


def test_cached_answers_as_beam_and_restores_it():
    view_as, specs = PipelineOptions.__dict__["view_as"], userstate.get_dofn_specs
    opts = PipelineOptions(["--runner", "FnApiRunner"])
    plain = beam.Map(lambda x: x).fn
    stateful = _Stateful()
    expected = (userstate.get_dofn_specs(plain), userstate.get_dofn_specs(stateful))
    with cached() as active:
        assert active
        v1, v2 = opts.view_as(StandardOptions), opts.view_as(StandardOptions)
        assert v1 is v2 and v1.runner == "FnApiRunner"
        v1.runner = "DirectRunner"  # a change through one view shows in every view, cached or not
        assert opts.view_as(StandardOptions).runner == "DirectRunner"
        assert opts.view_as(TypeOptions).pipeline_type_check == PipelineOptions([]).view_as(
            TypeOptions).pipeline_type_check
        assert (userstate.get_dofn_specs(plain), userstate.get_dofn_specs(stateful)) == expected
        assert userstate.get_dofn_specs(stateful) is userstate.get_dofn_specs(stateful)
        assert userstate.is_stateful_dofn(stateful) and not userstate.is_stateful_dofn(plain)
    assert PipelineOptions.__dict__["view_as"] is view_as and userstate.get_dofn_specs is specs
    assert opts.view_as(StandardOptions).runner == "DirectRunner"


def test_a_pipeline_runs_the_same_inside_cached(tmp_path):
    def run():
        with beam.Pipeline("FnApiRunner") as p:
            out = (p | beam.Create([("a", 1), ("b", 2), ("a", 3)]) | beam.GroupByKey()
                   | beam.MapTuple(lambda k, vs: f"{k}:{sum(vs)}"))
            beam.testing.util.assert_that(out, beam.testing.util.equal_to(["a:4", "b:2"]))

    import apache_beam.testing.util  # noqa: F401

    run()
    with cached():
        run()

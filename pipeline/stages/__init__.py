"""The stages layer: one function per stage of the pipeline, each taking a typed request.

Between the library layers (engines, model, mapping, assessment) and the front-ends: the
``eulc`` CLI (:mod:`pipeline.app`) and the Python API (:mod:`pipeline.api`) are independent
siblings above it, and both only build a request, call the stage and render what it reports.

======================  =========================================  ===================================
stage                   function                                    request
======================  =========================================  ===================================
table                   :func:`pipeline.stages.table.build_table`    :class:`~pipeline.stages.table.TableRequest`
select                  :func:`pipeline.stages.select.select`        :class:`~pipeline.stages.select.SelectRequest`
train                   :func:`pipeline.stages.train.train`          :class:`~pipeline.stages.train.TrainRequest`
evaluate                :func:`pipeline.stages.evaluate.evaluate`    :class:`~pipeline.stages.evaluate.EvaluateRequest`
features                :func:`pipeline.stages.features.features`    :class:`~pipeline.stages.features.FeaturesRequest`
map                     :func:`pipeline.stages.mapping.map_tiles`    :class:`~pipeline.stages.mapping.MapRequest`
agreement, report       :mod:`pipeline.stages.assess`                ``AgreementRequest``, ``ReportRequest``
drift                   :func:`pipeline.stages.assess.drift`         :class:`~pipeline.stages.assess.DriftRequest`
ood                     :func:`pipeline.stages.ood.add_ood`          :class:`~pipeline.stages.ood.OodRequest`
demo                    :func:`pipeline.stages.demo.run_demo`        :class:`~pipeline.stages.demo.DemoRequest`
======================  =========================================  ===================================

Conventions: a request's fields are the stage's parameters (the CLI's flags are their
spelling with dashes, mapped in one table, :mod:`pipeline.app.flags`); a bad value is an
:class:`~pipeline.core.errors.EulcError` naming the field in backticks (```tile_size```);
progress goes to an ``on_event(kind, info)`` callback (:mod:`pipeline.stages.events`); what a
stage resumes it resumes through :mod:`pipeline.core.ledger`.
"""

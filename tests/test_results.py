"""vae_lab.results, the one schema of every result's keys: a table that holds together."""
from vae_lab import results
from vae_lab.results import BOOKKEEPING, DETAIL, DISENTANGLEMENT, EVALUATION, MEASURE, MEASUREMENT, TRAINING


def test_every_key_has_a_role_a_format_and_a_known_note():
    for table in (MEASURE, TRAINING, EVALUATION, DISENTANGLEMENT):
        names = [k.name for k in table]
        assert len(names) == len(set(names))
        for key in table:
            assert key.role in (MEASUREMENT, DETAIL, BOOKKEEPING), key
            format(1.0 if key.fmt != "s" else "x", key.fmt if key.fmt != "d" else ".0f")  # a format Python takes
            assert key.note is None or key.note in names, key
            assert key.meaning


def test_the_derived_lists_come_from_the_tables():
    assert set(results.HEADLINE) <= set(results.names(MEASURE, MEASUREMENT))
    assert set(results.RENAMED.values()) <= set(results.MEASURED)
    assert not set(results.RENAMED) & set(results.KEYS)  # an old name is never a current key
    assert results.MEASURED[:3] == ("elbo", "recon_nll", "kl")


def test_metric_keys_and_upgrading_old_results():
    assert results.metric_key("sap") == "sap"
    assert results.metric_key("dci", "completeness") == "dci_completeness"
    assert results.metric_key("dci", "completeness", "sampled") == "dci_completeness_sampled"
    old = {"elbo": -1.0, "mig": 0.2, "mig_per_factor": {"shape": 0.1}}
    assert results.upgrade(old) == {"elbo": -1.0, "mig_dlib": 0.2, "mig_dlib_per_factor": {"shape": 0.1}}
    both = {"mig": 0.2, "mig_dlib": 0.7}  # eval.json before: measure()'s mig and the metric's mig_dlib
    assert results.upgrade(both) == {"mig_dlib": 0.7}

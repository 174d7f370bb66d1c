from sipd.nets import NETS
from sipd.pipeline import ARCHS


def test_daemon_arch_names_match_the_net_registry() -> None:
    # The daemon validates arch names without importing torch.
    assert set(ARCHS) == set(NETS)

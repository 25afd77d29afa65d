import pytest

from cliplab.errors import InputError
from cliplab.search.sizing import EXACT_BELOW, HNSW_BELOW, ivf_lists, parse_bytes, plan_index


def test_small_collections_are_searched_exactly():
    assert plan_index(EXACT_BELOW - 1, 512, parse_bytes("4GB")).key == "Flat"


def test_hnsw_when_its_graph_fits_the_budget():
    # M = floor((budget / (4 n) - d) / 2): 4GB over 50k x 512 gives M far above 32 -> capped at 32
    assert plan_index(50_000, 512, parse_bytes("4GB")).key == "HNSW32,Flat"
    # 50k x 512: budget for M = 10 exactly is 4 n (d + 2 M) bytes
    assert plan_index(50_000, 512, 4 * 50_000 * (512 + 20)).key == "HNSW10,Flat"


def test_ivf_flat_beyond_hnsw_sizes_or_when_memory_mapped():
    assert plan_index(HNSW_BELOW, 512, parse_bytes("4GB")).key == "IVF1024,Flat"  # 2^round(log2(4 sqrt(1e5))) = 2^10
    assert plan_index(1_000_000, 512, parse_bytes("4GB")).key == "IVF4096,Flat"
    assert plan_index(50_000, 64, parse_bytes("4GB"), mmap=True).kind == "ivf_flat"


def test_compressed_index_when_raw_vectors_do_not_fit():
    plan = plan_index(1_000_000, 512, parse_bytes("256MB"))
    assert plan.kind == "ivf_pq"
    assert plan.key == "OPQ128_512,IVF4096_HNSW32,PQ128x8"
    assert plan.estimated_bytes <= parse_bytes("256MB")
    small = plan_index(1_000_000, 512, parse_bytes("40MB"))
    assert small.key.startswith("OPQ16_112,") and small.estimated_bytes <= parse_bytes("40MB")


def test_impossible_budget_and_bad_sizes_are_clear_errors():
    with pytest.raises(InputError, match="memory-budget"):
        plan_index(10_000_000, 512, parse_bytes("10MB"))
    with pytest.raises(InputError, match="not a size"):
        parse_bytes("four gigs")
    assert parse_bytes("2GiB") == 2 * 2**30 and parse_bytes("1.5k") == 1500


def test_ivf_lists_follow_four_sqrt_n():
    assert [ivf_lists(n) for n in (100, 10_000, 1_000_000)] == [32, 512, 4096]

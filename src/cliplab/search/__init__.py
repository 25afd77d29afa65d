"""Search a collection: a FAISS index with a metadata sidecar, text/image/composed queries,
near-duplicate linking, an HTTP service and a web page.

    index = SearchIndex.build("feats/", memory_budget="4GB", target_recall=0.95)
    hits = index.search(query_vector(model, text="a red star"), k=10, where="label = 'star'")
"""

from cliplab.search.index import SearchIndex
from cliplab.search.queries import DeltaMapper, compose, query_vector
from cliplab.search.sizing import IndexPlan, plan_index

__all__ = ["DeltaMapper", "IndexPlan", "SearchIndex", "compose", "plan_index", "query_vector"]

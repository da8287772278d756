typedef int placeholder_store_snapshot_t; /* being written */

typedef int placeholder_store_rocks_t; /* being written */

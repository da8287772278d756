typedef int placeholder_mem_store_t; /* being written */

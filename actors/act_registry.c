typedef int placeholder_act_registry_t; /* being written */

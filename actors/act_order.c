typedef int placeholder_act_order_t; /* being written */

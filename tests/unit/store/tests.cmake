cn_unit_test(store store LIBS chatstore)
cn_unit_test(store store_batch LIBS chatstore)

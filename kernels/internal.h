// internal.h: helpers shared by the kernel files (not visible to Swift).
#ifndef CK_INTERNAL_H
#define CK_INTERNAL_H
#include "include/ckernels.h"
int ck_use_avx512(void);
#endif

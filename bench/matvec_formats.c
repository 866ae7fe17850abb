// matvec_formats.c: 512x1024 matvecs over 512 MB of BF16, FP8 (128x128 E8M0 scales) and FP4 (per-32 scales)
// weights through the dsv4 kernels; GB/s of stored bytes. Build and run (THREADS, TOKENS):
//   clang -O3 -o /tmp/mvf bench/matvec_formats.c kernels/*.c -Ikernels/include -lpthread -lm && /tmp/mvf 1 1
#include "../kernels/include/ckernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdint.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){ int th=argc>1?atoi(argv[1]):1; ck_pool_init(th); size_t T=argc>2?atoi(argv[2]):1;
  size_t N=512,K=1024;
  for(int q=0;q<3;q++){ ck_dtype dt = q==0?CK_DTYPE_BF16:(q==1?CK_DTYPE_F8E4M3:CK_DTYPE_FP4E2M1);
    size_t rb=ck_row_bytes(dt,K), mb=N*rb, copies=(512u<<20)/mb; uint8_t*w=aligned_alloc(64,copies*mb); for(size_t i=0;i<copies*mb;i++)w[i]=(uint8_t)(i*37%251)&0x77;
    size_t bc = dt==CK_DTYPE_FP4E2M1?32:128, br = dt==CK_DTYPE_FP4E2M1?1:128; size_t ld=(K+bc-1)/bc; size_t srows=(N+br-1)/br;
    uint8_t*sc=malloc(copies*srows*ld); memset(sc,127,copies*srows*ld);
    float*x=malloc(T*K*4),*y=malloc(T*N*4); for(size_t i=0;i<T*K;i++)x[i]=(i%13)*0.01f;
    double best=0; for(int r=0;r<3;r++){ double t0=now(); for(size_t c=0;c<copies;c++){ ck_scales s={sc+c*srows*ld,0,ld,br,bc,0}; if(q==0) ck_matmul_auto(x,K,T,K,w+c*mb,dt,N,y,N); else ck_matmul_scaled_auto(x,K,T,K,w+c*mb,dt,&s,N,y,N);} double g=copies*mb/(now()-t0)/1e9; if(g>best)best=g;}
    printf("%s T=%zu: %.2f GB/s of stored bytes = %.2f Gweights/s\n", q==0?"bf16":(q==1?"fp8":"fp4"), T, best, best*K/rb);
    free(w);free(sc);free(x);free(y);}
}

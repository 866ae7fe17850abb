// matvec_rows_ab.c: one core, BF16 512x1024 matvecs over 1 GB of weights, streamed as NB interleaved rows
// with a software prefetch PF bytes ahead (NB/PF), against a plain read of the same buffer. Build and run:
//   clang -O3 -o /tmp/mvab bench/matvec_rows_ab.c && /tmp/mvab
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdint.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl")))
#define MV(NAME, NB, PF) \
TGT static void NAME(const float*xp,size_t K,const uint16_t*w,size_t N,float*y){ const __m512i zero=_mm512_setzero_si512(); \
 for(size_t n0=0;n0<N;n0+=NB){ __m512 acc[NB]; for(int j=0;j<NB;j++)acc[j]=_mm512_setzero_ps(); \
  for(size_t k=0;k<K;k+=32){ __m512 xa=_mm512_loadu_ps(xp+k), xb=_mm512_loadu_ps(xp+k+16); \
   for(int j=0;j<NB;j++){ const uint16_t*row=w+(n0+j)*K+k; if(PF) _mm_prefetch((const char*)row+PF,_MM_HINT_T0); __m512i v=_mm512_loadu_si512(row); \
     acc[j]=_mm512_fmadd_ps(xa,_mm512_castsi512_ps(_mm512_unpacklo_epi16(zero,v)),acc[j]); acc[j]=_mm512_fmadd_ps(xb,_mm512_castsi512_ps(_mm512_unpackhi_epi16(zero,v)),acc[j]);}} \
  for(int j=0;j<NB;j++) y[n0+j]=_mm512_reduce_add_ps(acc[j]); } }
MV(mv8_1k,8,1024) MV(mv8_0,8,0) MV(mv8_4k,8,4096) MV(mv4_1k,4,1024) MV(mv4_2k,4,2048) MV(mv2_1k,2,1024) MV(mv2_4k,2,2048) MV(mv1_2k,1,2048) MV(mv4_0,1,0) MV(mv16_1k,1,1024)
TGT static float rd(const float*p,size_t n){__m512 a0=_mm512_setzero_ps(),a1=a0,a2=a0,a3=a0; for(size_t i=0;i<n;i+=64){a0=_mm512_add_ps(a0,_mm512_load_ps(p+i));a1=_mm512_add_ps(a1,_mm512_load_ps(p+i+16));a2=_mm512_add_ps(a2,_mm512_load_ps(p+i+32));a3=_mm512_add_ps(a3,_mm512_load_ps(p+i+48));} return _mm512_reduce_add_ps(a0+a1+a2+a3);}
typedef void(*mvf)(const float*,size_t,const uint16_t*,size_t,float*);
int main(){ size_t N=512,K=1024; size_t mb=N*K*2, copies=(1024u<<20)/mb; uint16_t*w=aligned_alloc(64,copies*mb); for(size_t i=0;i<copies*mb/2;i++)w[i]=0x3C00+(i%509);
 float*x=aligned_alloc(64,K*4),*y=malloc(N*4); for(size_t i=0;i<K;i++)x[i]=1;
 mvf fs[]={mv8_1k,mv8_0,mv8_4k,mv4_1k,mv4_2k,mv2_1k,mv2_4k,mv1_2k,mv4_0,mv16_1k}; const char*nm[]={"8/1k","8/0","8/4k","4/1k","4/2k","2/1k","2/2k","1/2k","1/0","1/1k"};
 double best[11]={0};
 for(int r=0;r<4;r++){ for(int f=0;f<11;f++){ double t0=now(); volatile float s=0;
   if(f==10){ s=rd((const float*)w,copies*mb/4);} else for(size_t c=0;c<copies;c++) fs[f](x,K,w+c*N*K,N,y);
   double g=copies*mb/(now()-t0)/1e9; if(g>best[f])best[f]=g; }}
 for(int f=0;f<10;f++) printf("%s %.2f  ",nm[f],best[f]); printf("| read %.2f GB/s\n",best[10]); }

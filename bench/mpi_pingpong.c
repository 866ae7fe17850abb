// mpi_pingpong.c: one-way latency of Open MPI point-to-point messages between two ranks
// (half the round trip of a blocking send/receive ping-pong), for the sizes an expert-parallel
// MoE layer sends (one row of hidden floats: 16 KB for V4-Flash, 28 KB for V4-Pro).
// Input for bench/ep_scale_model.py. Prints min and median over the repeats.
//   mpicc -O2 -o /tmp/pp bench/mpi_pingpong.c
//   mpirun --allow-run-as-root --bind-to none --mca btl self,vader -n 2 /tmp/pp
//   mpirun --allow-run-as-root --bind-to none --mca btl tcp,self  -n 2 /tmp/pp
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const int sizes[] = {8, 1024, 4096, 16384, 28672, 65536, 262144, 1048576};
    const int reps = 400;
    char *buf = calloc(1, 1 << 20);
    double *t = malloc(sizeof(double) * reps);
    if (rank == 0) printf("%10s %14s %14s %14s\n", "bytes", "min_us", "median_us", "median_GB/s");
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int n = sizes[s];
        for (int i = -20; i < reps; i++) {  // 20 warm-up round trips
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            if (rank == 0) {
                MPI_Send(buf, n, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
                MPI_Recv(buf, n, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else {
                MPI_Recv(buf, n, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(buf, n, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
            }
            if (i >= 0) t[i] = (MPI_Wtime() - t0) / 2 * 1e6;
        }
        if (rank == 0) {
            qsort(t, reps, sizeof(double), cmp);
            double med = t[reps / 2];
            printf("%10d %14.1f %14.1f %14.2f\n", n, t[0], med, n / med / 1e3);
        }
    }
    free(t);
    free(buf);
    MPI_Finalize();
    return 0;
}

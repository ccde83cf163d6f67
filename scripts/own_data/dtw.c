/* 1-NN with dynamic time warping (full window; multivariate "dependent" DTW: squared Euclidean distance between
   the steps' channel vectors), the baseline the UCR/UEA archives publish beside every classification set.
   Early abandoning: a row of the cost matrix whose minimum already exceeds the best distance so far stops. */
#include <float.h>
#include <stdlib.h>

static double dtw(const double *a, int na, const double *b, int nb, int d, double *prev, double *cur, double best) {
    for (int j = 0; j <= nb; j++) prev[j] = DBL_MAX;
    prev[0] = 0.0;
    for (int i = 1; i <= na; i++) {
        cur[0] = DBL_MAX;
        double row_min = DBL_MAX;
        for (int j = 1; j <= nb; j++) {
            double cost = 0.0;
            for (int c = 0; c < d; c++) {
                double diff = a[(i - 1) * d + c] - b[(j - 1) * d + c];
                cost += diff * diff;
            }
            double m = prev[j - 1];
            if (prev[j] < m) m = prev[j];
            if (cur[j - 1] < m) m = cur[j - 1];
            cur[j] = cost + m;
            if (cur[j] < row_min) row_min = cur[j];
        }
        if (row_min >= best) return DBL_MAX;
        double *t = prev; prev = cur; cur = t;
    }
    return prev[nb];
}

/* For each query series, the index of its nearest reference series. Series are concatenated [steps, d] rows;
   offsets/lengths in steps. Returns 0, or -1 when out of memory. */
int nearest(const double *refs, const long *ref_off, const int *ref_len, int n_refs,
            const double *queries, const long *q_off, const int *q_len, int n_queries, int d, int *out) {
    int longest = 0;
    for (int r = 0; r < n_refs; r++) if (ref_len[r] > longest) longest = ref_len[r];
    double *prev = malloc(sizeof(double) * (longest + 1)), *cur = malloc(sizeof(double) * (longest + 1));
    if (!prev || !cur) { free(prev); free(cur); return -1; }
    for (int q = 0; q < n_queries; q++) {
        double best = DBL_MAX;
        out[q] = 0;
        for (int r = 0; r < n_refs; r++) {
            double dist = dtw(queries + q_off[q] * d, q_len[q], refs + ref_off[r] * d, ref_len[r], d, prev, cur, best);
            if (dist < best) { best = dist; out[q] = r; }
        }
    }
    free(prev); free(cur);
    return 0;
}

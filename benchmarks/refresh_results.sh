#!/usr/bin/env bash
# Run every benchmark whose figures the README shows, each writing benchmarks/results/NAME.json, then
# rewrite the README's tables from those files. About four hours on 2 cores.
#     bash benchmarks/refresh_results.sh [NAME ...]    # only the runs whose file name starts with NAME
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results
mkdir -p "$out"
runs=(
    "synthetic_throughput|benchmarks/synthetic_throughput.py"
    "embed_throughput|benchmarks/embed_throughput.py"
    "embed_throughput_photos|benchmarks/embed_throughput.py --photo-size 4032x3024 --n 48"
    "adapt_speed|benchmarks/adapt_speed.py --skip-linear"
    "search|benchmarks/search.py --types ivf_flat --clients 1,4,16"
    "service_load|benchmarks/service_load.py"
    "segment_quality|benchmarks/segment_quality.py --pamr --regions --segmenter-steps 1000 --mask-prompt-steps 100 --threads 1"
    "segment_speed|benchmarks/segment_speed.py"
    "inspect_quality|benchmarks/inspect_quality.py"
    "support_sets|benchmarks/support_sets.py"
    "multilevel_probe|benchmarks/multilevel_probe.py"
    "ip_clip|benchmarks/ip_clip.py --train 1280 --epochs 20 --seed 0"
    "ip_clip_seed1|benchmarks/ip_clip.py --train 1280 --epochs 20 --seed 1"
    "ip_clip_160|benchmarks/ip_clip.py --train 160 --epochs 20"
    "ip_clip_160_seed1|benchmarks/ip_clip.py --train 160 --epochs 20 --seed 1"
    "ip_clip_640|benchmarks/ip_clip.py --train 640 --epochs 20"
    "ip_clip_640_seed1|benchmarks/ip_clip.py --train 640 --epochs 20 --seed 1"
    "label_free|benchmarks/label_free.py"
    "label_free_block2|benchmarks/label_free.py --ssl-layers -2"
    "label_free_mlp|benchmarks/label_free.py --ssl-layers -2 --labeller mlp"
    "label_free_norms|benchmarks/label_free.py --ssl-layers -2 --tune norms"
    "multilingual|benchmarks/multilingual.py"
    "moe|benchmarks/moe.py --skip-baselines --threads 1 --seed 0"
    "moe_seed1|benchmarks/moe.py --skip-baselines --threads 1 --seed 1"
    "moe_seed2|benchmarks/moe.py --skip-baselines --threads 1 --seed 2"
    "moe_seed3|benchmarks/moe.py --skip-baselines --threads 1 --seed 3"
    "moe_seed4|benchmarks/moe.py --skip-baselines --threads 1 --seed 4"
    "moe_seeds|benchmarks/moe_seeds.py benchmarks/results/moe.json benchmarks/results/moe_seed1.json benchmarks/results/moe_seed2.json benchmarks/results/moe_seed3.json benchmarks/results/moe_seed4.json"
    "moe_with_baselines|benchmarks/moe.py --threads 1"
    "moe_baselines|benchmarks/moe.py --emphasis none --stage-steps 100 --lr 1e-4 --label-smoothing 0.1 --clusters 3 --router-lr 1e-3 --save /tmp/moebench/model --router-label-smoothing 0.1"
    "moe_hard|benchmarks/moe.py --skip-baselines --threads 1 --stage-steps 200 --emphasis hard --lr 2e-4 --label-smoothing 0.1 --router-lr 1e-4 --router-label-smoothing 0.1"
    "moe_hard_300|benchmarks/moe.py --skip-baselines --threads 1 --emphasis hard --stage-steps 300 --lr 2e-4 --label-smoothing 0.1 --router-lr 1e-4 --router-label-smoothing 0.1"
    "moe_hard_300_last2|benchmarks/moe.py --skip-baselines --threads 1 --emphasis hard --stage-steps 300 --moe-blocks 2 --lr 2e-4 --label-smoothing 0.1 --router-lr 1e-4 --router-label-smoothing 0.1"
    "moe_hard_300_router200|benchmarks/moe.py --skip-baselines --threads 1 --emphasis hard --stage-steps 300 --router-steps 200 --lr 2e-4 --label-smoothing 0.1 --router-lr 1e-4 --router-label-smoothing 0.1"
    "moe_hard_400|benchmarks/moe.py --skip-baselines --threads 1 --emphasis hard --stage-steps 400 --lr 2e-4 --label-smoothing 0.1 --router-lr 1e-4 --router-label-smoothing 0.1"
    "moe_hard_lr3e-4|benchmarks/moe.py --skip-baselines --threads 1 --emphasis hard --stage-steps 200 --lr 3e-4 --label-smoothing 0.1 --router-lr 1e-4 --router-label-smoothing 0.1"
    "moe_lr3e-4|benchmarks/moe.py --skip-baselines --threads 1 --lr 3e-4 --emphasis none --stage-steps 100 --label-smoothing 0.1 --router-lr 1e-4 --router-label-smoothing 0.1"
    "moe_official_sampler|benchmarks/moe.py --skip-baselines --threads 1 --emphasis none --stage-steps 100 --lr 2e-4 --label-smoothing 0.1 --save /tmp/moebench/model --router-lr 1e-4 --router-label-smoothing 0.1"
    "moe_smoothed_router|benchmarks/moe.py --skip-baselines --threads 1 --router-lr 1e-4 --router-label-smoothing 0.07"
    "moe_smoothed_router_seed1|benchmarks/moe.py --skip-baselines --threads 1 --seed 1 --router-lr 1e-4 --router-label-smoothing 0.07"
    "moe_smoothed_router_seed2|benchmarks/moe.py --skip-baselines --threads 1 --seed 2 --router-lr 1e-4 --router-label-smoothing 0.07"
    "moe_smoothed_router_seed3|benchmarks/moe.py --skip-baselines --threads 1 --seed 3 --router-lr 1e-4 --router-label-smoothing 0.07"
    "moe_smoothed_router_seed4|benchmarks/moe.py --skip-baselines --threads 1 --seed 4 --router-lr 1e-4 --router-label-smoothing 0.07"
    "moe_smoothed_router_seeds|benchmarks/moe_seeds.py benchmarks/results/moe_smoothed_router.json benchmarks/results/moe_smoothed_router_seed1.json benchmarks/results/moe_smoothed_router_seed2.json benchmarks/results/moe_smoothed_router_seed3.json benchmarks/results/moe_smoothed_router_seed4.json"
    "moe_smoothed_router_with_baselines|benchmarks/moe.py --threads 1 --router-lr 1e-4 --router-label-smoothing 0.07"
    "un2clip|benchmarks/un2clip.py --out runs/un2clip"
    "un2clip_merge07|benchmarks/un2clip.py --merge 0.7 --out runs/un2clip_merge07"
    "un2clip_diffusion|benchmarks/un2clip.py --decoder diffusion --decoder-steps 2000 --decoder-lr 1e-3 --finetune-noise 0.1 --merge 1 --data synthetic:4000 --out runs/un2clip_diffusion"
    "un2clip_binding|benchmarks/un2clip_binding.py --decoder runs/un2clip_diffusion"
    "un2clip_anchor003|benchmarks/un2clip.py --decoder diffusion --decoder-steps 2000 --decoder-lr 1e-3 --finetune-noise 0.1 --merge 1 --data synthetic:4000 --anchor 0.03 --out runs/un2clip_a003"
    "un2clip_decoder32|benchmarks/un2clip.py --decoder diffusion --decoder-steps 2000 --decoder-lr 1e-3 --finetune-noise 0.1 --merge 1 --data synthetic:4000 --decoder-size 32 --out runs/un2clip_decoder32"
    "un2clip_fullt|benchmarks/un2clip.py --decoder diffusion --decoder-steps 2000 --decoder-lr 1e-3 --finetune-noise 0.1 --merge 1 --data synthetic:4000 --t-max 1 --draws 2 --out /tmp/u2final/model"
    "un2clip_regression|benchmarks/un2clip.py --decoder-steps 1500 --decoder-lr 2e-3 --noise 0.4 --finetune-noise 0.4 --anchor 1 --lr 3e-4 --merge 1 --data synthetic:4000 --pairs 500"
    "un2clip_regression_long|benchmarks/un2clip.py --decoder-lr 2e-3 --noise 0.4 --finetune-noise 0.4 --anchor 1 --lr 3e-4 --merge 1 --data synthetic:4000 --pairs 500 --decoder-steps 4000 --steps 1000"
    "data_side_alt_text|benchmarks/data_side.py --threads 1 --variants alt-text"
    "data_side_recaptioned|benchmarks/data_side.py --threads 1 --variants recaptioned"
    "data_side_veclip_mix|benchmarks/data_side.py --threads 1 --variants veclip-mix"
    "data_side_laclip|benchmarks/data_side.py --threads 1 --variants laclip"
    "data_side_long_captions|benchmarks/data_side.py --threads 1 --variants long-truncated,long-clip"
    "data_side_long_tail|benchmarks/data_side.py --threads 1 --seed 0 --tail-pool 12000 --t 300 --eval-n 600 --variants raw-pool,metaclip-curated"
    "data_side_long_tail_seed1|benchmarks/data_side.py --threads 1 --seed 1 --tail-pool 12000 --t 300 --eval-n 600 --variants raw-pool,metaclip-curated"
    "data_side_long_tail_pool3000|benchmarks/data_side.py --threads 1 --tail-pool 3000 --t 75 --variants raw-pool,metaclip-curated"
    "data_side_long_tail_pool3000_seed1|benchmarks/data_side.py --threads 1 --seed 1 --tail-pool 3000 --t 75 --variants raw-pool,metaclip-curated"
    "data_side_long_tail_scratch|benchmarks/data_side.py --threads 1 --tail-init scratch --tail-pool 3000 --t 75 --variants raw-pool,metaclip-curated"
    "data_side_long_tail_scratch_450|benchmarks/data_side.py --threads 1 --tail-init scratch --tail-pool 3000 --t 75 --steps 450 --variants raw-pool,metaclip-curated"
    "objectives|benchmarks/objectives.py"
    "objectives_region|benchmarks/objectives.py --only cloc,grain,farslip,declip,dclip,pacl"
    "vit_dense|benchmarks/vit_dense.py"
    "caption_quality|benchmarks/caption_quality.py"
    "caption_distill|benchmarks/caption_distill.py"
    "caption_distill_w64|benchmarks/caption_distill.py --student-width 64"
)
wanted() {  # no names given, or one of them starts the run's name
    [ $# -eq 1 ] && return 0
    local name=$1 prefix
    shift
    for prefix in "$@"; do [[ $name == "$prefix"* ]] && return 0; done
    return 1
}
for run in "${runs[@]}"; do
    name=${run%%|*}
    command=${run#*|}
    wanted "$name" "$@" || continue
    echo "== $name: python $command"
    # shellcheck disable=SC2086  # the command's words split on purpose
    python $command --json "$out/$name.json"
done
python benchmarks/readme_tables.py --readme README.md

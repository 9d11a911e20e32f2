"""How well the PET discrepancy target estimated from the data matches the truth's: for a validation phantom,
the expected Poisson deviance of the true means, the truth's own deviance, OSEM's deviance after each iteration
(where K lands) and the target from the OSEM image at 1, 2, 4 and 8 iterations (8 subsets), as a deviation from
the truth's expectation (the figures of ``TARGET_ITERATIONS`` in diffrecon/methods/discrepancy.py):

    python scripts/check_discrepancy_target.py --preset demo --count-level 1% --seed 10000
"""
from __future__ import annotations

import argparse

import torch

from diffrecon.classical.pet import osem
from diffrecon.io.demo_cases import simulated_pet_case
from diffrecon.methods.discrepancy import poisson_discrepancy
from diffrecon.physics.discrepancy import poisson_expected_deviance
from diffrecon.physics.fidelity import PoissonLikelihood


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo2d", choices=("demo", "demo2d"))
    parser.add_argument("--count-level", default="1%")
    parser.add_argument("--seed", type=int, default=10000, help="a validation phantom")
    args = parser.parse_args()
    case = simulated_pet_case(args.seed, args.preset, args.count_level, split="validation")
    fidelity = PoissonLikelihood(case.physics, case.data)
    truth = torch.as_tensor(case.reference, dtype=torch.float32)[None]
    with torch.no_grad():
        expected = float(poisson_expected_deviance(fidelity.expected(truth)).sum())
        print(f"bins {case.data.numel()}, E[D] of the true means {expected:.6g}, "
              f"D of the truth {float(fidelity.deviance(truth)):.6g}")
        run = osem(fidelity.data, case.physics, 8, 8, progress=False)
        saturated = fidelity.saturated()
        print("OSEM deviance after 1-8 iterations: " + ", ".join(f"{2 * (saturated - v):.6g}"
                                                                 for v in run.log_likelihood))
        for iterations in (1, 2, 4, 8):
            image = osem(fidelity.data, case.physics, iterations, 8, progress=False).image
            target = poisson_discrepancy(fidelity, image).target
            print(f"target from OSEM {iterations} x 8: {target:.6g} ({100 * (target / expected - 1):+.2f}%)")


if __name__ == "__main__":
    main()

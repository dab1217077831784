import torch

from hmr.outputs import MeshOutput


def test_indexing_and_detach():
    out = MeshOutput(
        global_orient=torch.eye(3).expand(3, 1, 3, 3),
        body_pose=torch.eye(3).expand(3, 23, 3, 3),
        betas=torch.arange(30.0).reshape(3, 10).requires_grad_(),
        vertices=torch.zeros(3, 5, 3),
        keypoints_3d=torch.zeros(3, 2, 3),
        cam_t_full=torch.ones(3, 3),
    )
    one = out[1]
    assert one.batch_size == 1 and one.betas[0, 0].item() == 10 and one.pred_cam is None
    assert out[-1].betas[0, 0].item() == 20
    assert out[torch.tensor([True, False, True])].batch_size == 2
    assert not out.detach().betas.requires_grad


def test_to_moves_every_tensor_and_keeps_the_rest():
    b = 2
    out = MeshOutput(torch.zeros(b, 1, 3, 3), torch.zeros(b, 23, 3, 3), torch.ones(b, 10), torch.ones(b, 5, 3),
                     torch.ones(b, 4, 3), ("a", "b", "c", "d"), "hmr-anny-v1", pred_cam=torch.ones(b, 3))  # fmt: skip
    moved = out.to(torch.float64)
    tensors = [f for f, v in vars(moved).items() if isinstance(v, torch.Tensor)]
    assert len(tensors) == 6 and all(getattr(moved, f).dtype == torch.float64 for f in tensors)
    assert out.betas.dtype == torch.float32  # a new record: the original is untouched
    assert moved.keypoint_names == out.keypoint_names and moved.body_model == "hmr-anny-v1"
    assert moved.cam_t_full is None and moved.batch_size == b

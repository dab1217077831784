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
